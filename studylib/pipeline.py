"""Run the study: every notebook in order through papermill, then build the report.

    python -m studylib.pipeline --profile quick|full|tiny [--weights PATH] [-p NAME VALUE ...]

Notebooks are the files `notebooks/NN*.ipynb`, run in name order (a new chapter is a new
file: `01b_twhin.ipynb` runs between `01_generate` and `02_train`; add it to `book.yml`'s
table of contents). Each notebook gets the profile's parameters that its `parameters` cell
declares, plus `profile`, `workdir` and `interactive=False`. Notebooks whose metadata says
`"studylib": {"rescore": true}` are the scoring and analysis steps: `--weights` reruns only
those and reuses the data and the trained model.

Executed copies go to `_build/executed/<profile>/`; the report (Jupyter Book 1, execution
off, warnings as errors) is built into `_build/html/` only when every notebook of the
profile has run successfully. Bad input stops the run with one line that names the
notebook and the parameter; a failed notebook's executed copy is kept and its path printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from studylib import yamlio
from studylib.errors import StudyError
from studylib.io import os_error, write_json

REPO = Path(__file__).resolve().parent.parent
INJECTED = ("profile", "workdir", "interactive")  # set by the pipeline, never by a profile
TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,)}
STATE = "state.json"


# ---------------------------------------------------------------- notebooks and parameters


def notebooks(source: Path) -> list[Path]:
    found = sorted(p for p in source.glob("[0-9]*.ipynb") if not p.name.startswith("."))
    if not found:
        raise StudyError(f"{source}: no notebooks (NN_name.ipynb) found")
    return found


def declared_parameters(notebook: Path) -> dict[str, str]:
    """Parameter name -> inferred type name ('int', 'str', ...; 'None' when unannotated)."""
    import papermill as pm

    return {name: info["inferred_type_name"] for name, info in pm.inspect_notebook(str(notebook)).items()}


def is_rescore_step(notebook: Path) -> bool:
    meta = json.loads(notebook.read_text()).get("metadata", {}).get("studylib", {})
    return bool(meta.get("rescore", False))


def load_profile(profiles: Path, name: str) -> tuple[Path, dict]:
    path = profiles / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in profiles.glob("*.yaml")))
        raise StudyError(f"--profile {name}: no {path} (profiles: {known})")
    try:
        raw = yamlio.read(path, "profile") or {}
    except StudyError as exc:
        raise StudyError(str(exc)) from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: must be a mapping of parameter names to values")
    return path, raw


def parse_override(name: str, text: str):
    """`-p NAME VALUE`: VALUE is read as YAML (300 -> int, 0.5 -> float, [1, 2] -> list, abc -> str)."""
    try:
        return yamlio.parse(text, f"-p {name}")
    except StudyError:
        return text


def check_type(notebook: str, name: str, value, type_name: str):
    """The value, converted where lossless (int -> float); StudyError naming notebook and parameter otherwise."""
    allowed = TYPES.get(type_name)
    if allowed is None:
        return value
    if isinstance(value, bool) and type_name != "bool":
        ok = False
    else:
        ok = isinstance(value, allowed)
    if not ok:
        raise StudyError(f"{notebook}: parameter {name} must be {type_name}, got {value!r} "
                            f"({type(value).__name__})")
    return float(value) if type_name == "float" else value


def plan(source: Path, params: dict, origin: dict[str, str]) -> list[tuple[Path, dict]]:
    """(notebook, its parameters) in run order; refuses unknown names and wrong types."""
    steps, known = [], {}
    for nb in notebooks(source):
        declared = declared_parameters(nb)
        if not declared:
            raise StudyError(f"{nb.name}: no cell tagged 'parameters'")
        known.update({name: nb.name for name in declared})
        steps.append((nb, declared))
    for name in params:
        if name in INJECTED:
            raise StudyError(f"{origin[name]}: parameter {name} is set by the pipeline (use --profile / --workdir)")
        if name not in known:
            raise StudyError(f"{origin[name]}: unknown parameter {name}; no notebook declares it "
                                f"(known: {', '.join(sorted(set(known) - set(INJECTED)))})")
    out = []
    for nb, declared in steps:
        values = {}
        for name, type_name in declared.items():
            if name in params:
                values[name] = check_type(nb.name, name, params[name], type_name)
        out.append((nb, values))
    return out


# ---------------------------------------------------------------- running


def run(profile: str, overrides: list[tuple[str, str]], weights: str | None, workdir: Path,
        source: Path = REPO / "notebooks", build: bool = True, quiet: bool = False) -> Path | None:
    """The whole pipeline; returns the report's index.html (None when build=False)."""
    from studylib.study import PIPELINE_ENV, Paths

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    started = time.perf_counter()
    profile_path, params = load_profile(source / "profiles", profile)
    origin = {name: str(profile_path.relative_to(source.parent)) if profile_path.is_relative_to(source.parent)
              else str(profile_path) for name in params}
    for name, text in overrides:
        params[name] = parse_override(name, text)
        origin[name] = f"-p {name}"
    steps = plan(source, params, origin)
    # The notebooks' kernels inherit this: their `Paths.of` then knows the pipeline runs them.
    os.environ[PIPELINE_ENV] = "1"
    out_of_step = Paths.of(workdir, profile).out_of_step
    rescore = weights is not None
    if out_of_step.exists():
        say(f"[pipeline] {out_of_step.read_text().strip()}: running every chapter")
        rescore_only = False
    else:
        rescore_only = rescore
    executed = workdir / "_build" / "executed" / profile
    executed.mkdir(parents=True, exist_ok=True)
    state = _load_state(executed)
    if rescore:
        weights = str(Path(weights).resolve()) if Path(weights).exists() else weights
        users = [nb.name for nb, p in steps if "weights" in declared_parameters(nb)]
        from studylib.scoring import load_weights
        try:
            load_weights(weights)
        except StudyError as exc:
            raise StudyError(f"{users[0] if users else 'pipeline'}: parameter weights: {exc}") from None
        for nb, values in steps:
            if "weights" in declared_parameters(nb):
                values["weights"] = weights
        paths = Paths.of(workdir, profile)
        first = next((nb.name for nb, _ in steps if is_rescore_step(nb)), "pipeline")
        if not (paths.run("by_name") / "model.pt").exists():
            raise StudyError(f"{first}: --weights needs a trained model in {paths.run('by_name')}; "
                                f"run the pipeline once without --weights (make study PROFILE={profile})")
        for nb, _ in steps:
            if not is_rescore_step(nb) and state.get(nb.name, {}).get("status") != "ok":
                raise StudyError(f"{nb.name}: has no successful run for profile {profile}; "
                                    f"run the pipeline once without --weights")
    # Weight files and presets are read minutes into the run (chapters 3 and 5): check them now.
    from studylib.scoring import load_weights
    for name in ("weights", "presets"):
        specs = [] if name == "weights" and rescore else params.get(name, [])
        for spec in [specs] if isinstance(specs, str) else specs:
            try:
                load_weights(str(spec))
            except StudyError as exc:
                nb = next((nb.name for nb, v in steps if name in v), "pipeline")
                raise StudyError(f"{nb}: parameter {name}: {exc}") from None

    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    for i, (nb, values) in enumerate(steps):
        if rescore_only and not is_rescore_step(nb):
            say(f"[{nb.stem}] reused (data and model are kept when re-scoring)")
            continue
        values = {**values, "profile": profile, "workdir": str(workdir), "interactive": False}
        declared = declared_parameters(nb)
        values = {k: v for k, v in values.items() if k in declared}
        out = executed / nb.name
        say(f"[{nb.stem}] running ...")
        t0 = time.perf_counter()
        state[nb.name] = {"status": "running", "parameters": values}
        _save_state(executed, state)
        try:
            # progress bar: cells done / total, elapsed. The kernel's log stays at ERROR: its
            # "running over TCP without encryption" warning is about a local loopback socket.
            pm.execute_notebook(str(nb), str(out), parameters=values, kernel_name="python3", cwd=str(nb.parent),
                                progress_bar=not quiet, log_output=False, report_mode=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
        except PapermillExecutionError as exc:
            seconds = time.perf_counter() - t0
            state[nb.name] = {"status": "failed", "parameters": values, "seconds": seconds}
            for later, _ in steps[i + 1:]:
                if later.name in state:
                    state[later.name]["status"] = "stale"
            _save_state(executed, state)
            evalue = str(exc.evalue).strip().splitlines()[0] if str(exc.evalue).strip() else exc.ename
            kind = "" if exc.ename == "StudyError" else f"{exc.ename}: "
            raise StudyError(f"{nb.name}: {kind}{evalue} [executed copy: {out}; report not built]") from None
        seconds = time.perf_counter() - t0
        state[nb.name] = {"status": "ok", "parameters": values, "seconds": round(seconds, 1),
                          "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _save_state(executed, state)
        say(f"[{nb.stem}] done in {seconds:.0f} s -> {out}")
    missing = [nb.name for nb, _ in steps if state.get(nb.name, {}).get("status") != "ok"]
    if missing:
        raise StudyError(f"{missing[0]}: has no successful run; the report was not built")
    if not build:
        return None
    say("[report] building with Jupyter Book ...")
    t0 = time.perf_counter()
    index = build_report(workdir, profile, [nb for nb, _ in steps], state, params,
                         total_seconds=time.perf_counter() - started)
    out_of_step.unlink(missing_ok=True)  # every chapter ran and the report matches the folders again
    say(f"[report] done in {time.perf_counter() - t0:.0f} s")
    say(f"report: {index}")
    return index


def _load_state(executed: Path) -> dict:
    path = executed / STATE
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(executed: Path, state: dict) -> None:
    write_json(executed / STATE, state)


# ---------------------------------------------------------------- the report


def build_report(workdir: Path, profile: str, steps: list[Path], state: dict, params: dict,
                 total_seconds: float | None = None) -> Path:
    """Stage report pages + executed notebooks, write _config.yml/_toc.yml from book.yml, build, publish."""
    book_file = REPO / "book.yml"
    book = yamlio.read(book_file, "book")
    stage = workdir / "_build" / "book"
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "notebooks").mkdir(parents=True)
    shutil.copytree(REPO / "report", stage / "report", ignore=shutil.ignore_patterns("_static"))
    if (REPO / "report" / "_static").exists():
        shutil.copytree(REPO / "report" / "_static", stage / "_static")
    executed = workdir / "_build" / "executed" / profile
    listed = _toc_files(book["toc"])
    for nb in steps:
        if f"notebooks/{nb.stem}" not in listed:
            raise StudyError(f"{nb.name}: not in book.yml's table of contents; add `- file: notebooks/{nb.stem}`")
        _stage_notebook(executed / nb.name, stage / "notebooks" / nb.name, workdir / "figures")
    for entry in listed:
        if entry.startswith("notebooks/") and not (stage / f"{entry}.ipynb").exists():
            raise StudyError(f"book.yml: lists {entry} but the pipeline has no such notebook")
    timings = {nb.name: state[nb.name]["seconds"] for nb in steps}
    (workdir / "_build" / "timings.json").write_text(json.dumps(
        {"profile": profile, "notebooks": timings, "pipeline_seconds_before_report": total_seconds}, indent=1))
    page = stage / "report" / "reproducibility.md"
    page.write_text(page.read_text() + reproducibility_markdown(workdir, profile, params, timings, total_seconds))
    page = stage / "report" / "findings.md"
    page.write_text(page.read_text() + findings_markdown(workdir, profile, steps))
    config = {k: v for k, v in book.items() if k != "toc"}
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (stage / "_toc.yml").write_text(yaml.safe_dump(book["toc"], sort_keys=False))
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(stage), "--builder", "html", "--warningiserror"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        log = workdir / "_build" / "report-build.log"
        log.write_text(proc.stdout + proc.stderr)
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "WARNING" in line or "Error" in line]
        raise StudyError(f"report build failed: {(lines or ['see log'])[0].strip()} (log: {log})")
    html = workdir / "_build" / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(stage / "_build" / "html"), html)
    return html / "index.html"


_SAVED_FIGURE = re.compile(r"""plots\.save\(\s*\w+\s*,\s*f?["']([\w.-]+)["']""")


def figure_alt_text(figures: Path, name: str) -> str:
    """A figure's alt text: its title, which `plots.save` stores in the PNG, else its file name."""
    from PIL import Image

    try:
        with Image.open(figures / f"{name}.png") as image:
            title = (image.text or {}).get("Title", "").strip()
    except OSError:
        title = ""
    return f"Figure {name}: {title}" if title else f"Figure {name}"


def _stage_notebook(src: Path, dst: Path, figures: Path) -> None:
    """Copy an executed notebook into the book with what a reader should not see removed: the
    cell papermill injects (it holds this machine's absolute `workdir`); and give every saved
    figure an alt text instead of the image's content hash."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if cell.cell_type != "code":
            continue
        names = _SAVED_FIGURE.findall(cell.source)
        if names and any("image/png" in out.get("data", {}) for out in cell.get("outputs", [])):
            cell.metadata.setdefault("mystnb", {}).setdefault("image", {})["alt"] = figure_alt_text(figures, names[0])
    nbformat.write(nb, dst)


def _toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))
            for part in e.get("parts", []) if isinstance(e.get("parts"), list) else []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return files


def findings_markdown(workdir: Path, profile: str, chapters: list[Path]) -> str:
    """The findings of this build (findings.json), grouped by chapter in the book's order."""
    from studylib.findings import load
    from studylib.study import Paths

    found = load(Paths.of(workdir, profile).results)
    lines = []
    for notebook in chapters:
        here = [f for f in found.values() if f["chapter"] == notebook.stem]
        if not here:
            continue
        title = json.loads(notebook.read_text()).get("metadata", {}).get("studylib", {}).get("title", notebook.stem)
        lines += ["", f"## {title}", "", f"From the chapter {{doc}}`../notebooks/{notebook.stem}`:", ""]
        for f in sorted(here, key=lambda f: f["id"]):
            verdict = f" *Verdict: {f['verdict']}.*" if f.get("verdict") else ""
            lines += [f"- **{f['id']}** — {f['text']}{verdict} (numbers: `{f['source']}`)", ""]
    return "\n".join(lines) + "\n"


def reproducibility_markdown(workdir: Path, profile: str, params: dict, timings: dict[str, float],
                             total_seconds: float | None) -> str:
    from importlib import metadata

    import torch

    lines = ["", f"## This build", "",
             f"- profile: `{profile}`; built {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"- commit: `{_git_commit()}`",
             f"- Python {platform.python_version()} on {platform.platform()}",
             f"- device: {_device(torch)}; precision: {_precision(torch, params.get('precision', 'auto'))}", "",
             "### Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| `{k}` | `{v}` |" for k, v in sorted(params.items())]
    lines += ["", "Seeds: the world and data sets derive from `seed` (data set *i* is drawn with `seed + i`), "
              "training from `train_seed` (repeats with `train_seed + 1`, … for `seeds` and `ablation_seeds`), "
              "the Sobol sample, bootstraps, null splits and the random ranking from `seed`.", "",
              "### Timings", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {name} | {sec:.0f} |" for name, sec in timings.items()]
    if total_seconds is not None:
        lines += [f"| all notebooks (this invocation, report build excluded) | {total_seconds:.0f} |"]
    lines += ["", "### Data manifests", "",
              "| data set | scenario | rows | shard | sha256 |", "|---|---|---:|---|---|"]
    data = workdir / "data" / profile
    # Ranker data sets list `shards` under a `scenario`; the TwHIN graph (data/<profile>/twhin/graph)
    # lists `files` under its `format`.
    for manifest in sorted(data.rglob("manifest.json")):
        m = json.loads(manifest.read_text())
        name, kind = manifest.parent.relative_to(data).as_posix(), m.get("scenario", m.get("format"))
        for part in m.get("shards", m.get("files", [])):
            lines.append(f"| {name} | {kind} | {part['rows']:,} | {part['file']} | `{part['sha256'][:16]}…` |")
    lines += ["", "### Package versions", "", "| package | version |", "|---|---|"]
    for pkg in ("torch", "numpy", "pandas", "pyarrow", "scipy", "SALib", "seaborn", "matplotlib", "papermill",
                "jupyter-book", "torchmetrics", "torchrec", "fbgemm-gpu-cpu", "fbgemm-gpu", "ipywidgets"):
        try:
            lines.append(f"| {pkg} | {metadata.version(pkg)} |")
        except metadata.PackageNotFoundError:
            if not pkg.startswith("fbgemm"):  # one of the two fbgemm builds is installed, CPU or CUDA
                lines.append(f"| {pkg} | not installed |")
    return "\n".join(lines) + "\n"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def _precision(torch, requested: str) -> str:
    from studylib.runtime import precision_reason

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return f"{precision_reason(requested, device)} (`precision: {requested}`)"


def _device(torch) -> str:
    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU only ({cpu}, {os.cpu_count()} logical cores visible), torch {torch.__version__}"


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studylib.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="notebooks/profiles/<NAME>.yaml: tiny, quick (default), full")
    parser.add_argument("--weights", help="re-score with this weight file (YAML) or preset; reuses data and model")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override one parameter (VALUE read as YAML); repeatable")
    parser.add_argument("--workdir", default=".",
                        help="where data/, runs/, figures/ and _build/ go (default: the current directory; "
                             "`make study` runs in the repository)")
    parser.add_argument("--no-report", action="store_true", help="run the notebooks only")
    args = parser.parse_args(argv)
    try:
        workdir = Path(args.workdir).resolve()
        if workdir.exists() and not workdir.is_dir():
            raise StudyError(f"--workdir {workdir}: is a file, not a folder")
        workdir.mkdir(parents=True, exist_ok=True)
        run(args.profile, [tuple(p) for p in args.parameter], args.weights, workdir, build=not args.no_report)
    except StudyError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pipeline: error: {os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pipeline: interrupted; the report was not built", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
