"""The report: the executed chapters staged beside the report pages, the findings and
reproducibility pages filled in from the run, and Jupyter Book 1 building the HTML.

`book.yml` holds the book's configuration and table of contents in one file; this module writes
it out as `_config.yml` and `_toc.yml` next to the staged pages under `_build/book/`, builds with
execution off and warnings as errors, and publishes `_build/html/`. The reproducibility page
records the machine, the device and precision, the commit and every parameter.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
import ast
from html import escape
from importlib import metadata

import yaml

from studylib import yamlio
from studylib.stats import MIN_POSITIVES
from studylib.errors import StudyError
from studylib.outputs import FINDINGS, Result, figure_named
from studylib.data.layout import MANIFEST
from studylib.analysis.ranking import TOP_K
from studylib.analysis.findings import (PAGE_ADJUSTMENT, PAGE_ALPHA, SECONDARY_ADJUSTMENT, abstract,
                                        apply_page_plan,
                                        budget_note, by_id, compare, load, p_text, page_plan)
from studylib.study.paths import Paths

REPO = Path(__file__).resolve().parents[2]
CONVERGED_PROFILE = "paper"  # the study every smaller one is compared with
# Its findings as measured and committed (benchmarks/reference/README.md says how); a workdir's own
# finished `paper` study takes precedence.
REFERENCE_FINDINGS = REPO / "benchmarks" / "reference" / f"{CONVERGED_PROFILE}_findings.json"


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
        _stage_notebook(executed / nb.name, stage / "notebooks" / nb.name, workdir / "figures", workdir)
    for entry in listed:
        if entry.startswith("notebooks/") and not (stage / f"{entry}.ipynb").exists():
            raise StudyError(f"book.yml: lists {entry} but the pipeline has no such notebook")
    timings = {nb.name: state[nb.name]["seconds"] for nb in steps}
    (workdir / "_build" / "timings.json").write_text(json.dumps(
        {"profile": profile, "notebooks": timings, "pipeline_seconds_before_report": total_seconds}, indent=1))
    page = stage / "report" / "reproducibility.md"
    page.write_text(page.read_text() + reproducibility_markdown(workdir, profile, params, timings, total_seconds))

    # every finding's p, adjusted p and adjusted verdict, at the profile's α (recorded: later readings keep it)
    apply_page_plan(Paths.of(workdir, profile).results, params.get("alpha", PAGE_ALPHA))
    reference = converged_findings(workdir, profile)
    page = stage / "report" / "findings.md"
    text = page.read_text().replace("@MIN_POSITIVES@", str(MIN_POSITIVES))  # the rule's constant, not a copy
    page.write_text(text + findings_markdown(workdir, profile, steps, reference))
    weights_page(stage / "report" / "weights.md", Paths.of(workdir, profile).results, params)
    page = stage / "report" / "intro.md"
    title, _, rest = page.read_text().partition("\n")
    page.write_text(f"{title}\n\n{budget_markdown(workdir, profile, params, reference)}\n"
                    f"{abstract_markdown(workdir, profile, params, reference)}{rest}")
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


def weights_page(page: Path, results: Path, params: dict) -> None:
    """Fill the "Try the weights" page: chapter 5's offline sliders (`Result.SLIDERS`) as raw HTML, copied
    beside the page, or a line saying that chapter 5 has not written them."""
    sliders = results / Result.SLIDERS
    if sliders.exists():
        shutil.copyfile(sliders, page.parent / Result.SLIDERS)
        block = f"```{{raw}} html\n:file: {Result.SLIDERS}\n```"
    else:
        block = f"*This run has no sliders: chapter 5 did not write `{Result.SLIDERS}`.*"
    text = page.read_text().replace("@TOP_K@", str(params.get("top_k", TOP_K)))
    page.write_text(text.replace("@SLIDERS@", block))


_SAVED_FIGURE = re.compile(r"""plots\.save\(\s*\w+\s*,\s*Figure\.(\w+)""")  # notebooks name figures by registry


def figure_alt_text(figures: Path, name: str) -> str:
    """A figure's alt text: its title, which `plots.save` stores in the PNG, else its file name."""
    from PIL import Image

    try:
        with Image.open(figures / f"{name}.png") as image:
            title = (image.text or {}).get("Title", "").strip()
    except OSError:
        title = ""
    return f"Figure {name}: {title}" if title else f"Figure {name}"


def _stage_notebook(src: Path, dst: Path, figures: Path, workdir: Path) -> None:
    """Copy an executed notebook into the book with what a reader should not see removed: the
    cell papermill injects (it holds this machine's absolute `workdir`), whose values the
    `parameters` cell shows instead (`show_run_parameters`); and give every saved figure an alt
    text instead of the image's content hash."""
    import nbformat

    nb = nbformat.read(src, as_version=4)
    show_run_parameters(nb, workdir)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
        if cell.cell_type != "code":
            continue
        names = [figure_named(constant) for constant in _SAVED_FIGURE.findall(cell.source)]
        if names and any("image/png" in out.get("data", {}) for out in cell.get("outputs", [])):
            cell.metadata.setdefault("mystnb", {}).setdefault("image", {})["alt"] = figure_alt_text(figures, names[0])
    nbformat.write(nb, dst)


def show_run_parameters(nb, workdir: Path) -> None:
    """Make the `parameters` cell show what this run used: each value papermill injected (its
    metadata `papermill.parameters`) replaces the notebook's default on that line, which says so
    (after `make study WEIGHTS=other.yaml`: `weights: str = "other.yaml"  # this run (default:
    "april_2023")`, not the default alone).
    `workdir` keeps its default; a file path under `workdir` is shown relative to it, any other
    absolute path by its name (the page never shows this machine's folders)."""
    values = nb.metadata.get("papermill", {}).get("parameters", {})
    for cell in nb.cells:
        if cell.cell_type != "code" or "parameters" not in cell.metadata.get("tags", []):
            continue
        lines = cell.source.splitlines()
        for node in reversed(ast.parse(cell.source).body):
            target = node.target if isinstance(node, ast.AnnAssign) else (
                node.targets[0] if isinstance(node, ast.Assign) else None)
            if not isinstance(target, ast.Name) or target.id not in values or target.id == "workdir" or node.value is None:
                continue
            default = ast.get_source_segment(cell.source, node.value)
            value = _public(values[target.id], Path(workdir))
            try:
                if ast.literal_eval(default) == value:
                    continue
            except ValueError:
                pass
            first, last = node.value.lineno - 1, node.value.end_lineno - 1
            head, tail = lines[first][:node.value.col_offset], lines[last][node.value.end_col_offset:]
            comment = tail.split("#", 1)[1].strip() if "#" in tail else ""
            note = f"  # this run (default: {' '.join(default.split())})" + (
                f"; {comment}" if comment else "")
            lines[first:last + 1] = [head + _literal(value) + note]
        cell.source = "\n".join(lines)


def _public(value, workdir: Path):
    if isinstance(value, str) and os.path.isabs(value):
        path = Path(value)
        return str(path.relative_to(workdir)) if path.is_relative_to(workdir) else path.name
    if isinstance(value, list):
        return [_public(v, workdir) for v in value]
    return value


def _literal(value) -> str:
    """A Python literal for a parameter value (strings in double quotes, as the notebooks write them)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


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


def converged_findings(workdir: Path, profile: str) -> tuple[str, dict[str, dict] | None] | None:
    """(where from, findings) of the converged study to compare this build with: the workdir's own
    finished `paper` study, else the committed reference; None when this build is that study. The
    findings are None when that study was made in another planted world (`reference_world`): it
    decided other questions, so nothing is compared."""
    if profile == CONVERGED_PROFILE:
        return None
    own = Paths(Path(workdir).resolve(), CONVERGED_PROFILE).results
    if (own / FINDINGS).exists():
        source, found = f"this folder's `{CONVERGED_PROFILE}` study", load(own)
    elif REFERENCE_FINDINGS.exists():
        source = f"the committed reference `{REFERENCE_FINDINGS.relative_to(REPO)}`"
        found = by_id(json.loads(REFERENCE_FINDINGS.read_text()))
    else:
        return None
    here = Paths.of(workdir, profile).results
    if (here / FINDINGS).exists() and reference_world(load(here)) != reference_world(found):
        return source, None
    return source, found


def reference_world(found: dict[str, dict]) -> dict:
    """The planted world a study's findings were made in, as far as they record it: the share of the
    logit variance that is personal (findings before `personal_signal` existed: the world of 2026-11,
    recorded as unknown) and the base-rate scale."""
    return {"pair_variance": found.get("personal_signal", {}).get("numbers", {}).get("pair_variance"),
            "rate_scale": found.get("base_rates", {}).get("numbers", {}).get("rate_scale")}


def budget_markdown(workdir: Path, profile: str, params: dict, reference: tuple[str, dict | None] | None) -> str:
    """The first page's note: which profile and budget made this report, whether its model converged
    by the study's rule, and how many findings the converged study decides otherwise."""
    found = load(Paths.of(workdir, profile).results)
    get = lambda name, default=0: params.get(name, default)  # noqa: E731
    stopped = get("stop_patience") > 0
    requests = get("eval_examples") // max(1, get("candidates", 50))
    lines = [f"```{{note}} This report was made by the {profile} profile:",  # no backticks in a fence's title
             f"{get('train_examples'):,} training examples; the main model trained with {get('seeds', 1)} seeds for "
             + (f"at most {get('steps'):,} steps of batch {get('batch_size')}, each run stopped when its held-out loss "
                "stopped improving" if stopped else f"a fixed {get('steps'):,} steps of batch {get('batch_size')}")
             + f"; held-out sets of {requests:,} requests of {get('candidates', 50)} candidates; precision "
             f"`{get('precision', 'auto')}`."]
    if "convergence" in found:
        lines.append(f"Convergence (finding `convergence`): *{found['convergence']['verdict']}*.")
    if reference is not None and reference[1] is None:
        lines.append(f"The converged `{CONVERGED_PROFILE}` study at hand ({reference[0]}) was made in another planted "
                     "world, so its verdicts are not compared with this report's. "
                     f"`make study PROFILE={CONVERGED_PROFILE}` makes one in this world.")
    elif reference is not None:
        source, other = reference
        changed = [r["id"] for r in compare(found, other) if r["changed"] and r["id"] in found and r["id"] in other]
        lines.append(f"Compared with the converged `{CONVERGED_PROFILE}` study ({source}), {len(changed)} of "
                     f"{len(found)} findings reach another verdict; the Findings page marks each of them. "
                     f"`make study PROFILE={CONVERGED_PROFILE}` makes that study here.")
    elif profile != CONVERGED_PROFILE:
        lines.append(f"No converged study to compare with: `make study PROFILE={CONVERGED_PROFILE}` makes one.")
    return "\n".join(lines) + "\n```\n"


def abstract_markdown(workdir: Path, profile: str, params: dict,
                      reference: tuple[str, dict | None] | None = None) -> str:
    """The first page's computed abstract (`findings.abstract`) from this build's findings, each headline
    interval set against the converged study's value (`reference`, from `converged_findings`)."""
    return abstract(page_plan(load(Paths.of(workdir, profile).results)), params, reference)


def findings_markdown(workdir: Path, profile: str, chapters: list[Path],
                      reference: tuple[str, dict] | None = None) -> str:
    """The findings of this build (findings.json), grouped by chapter in the book's order; where the
    converged study (`reference`) decides a finding otherwise, the finding says so."""
    found = page_plan(load(Paths.of(workdir, profile).results))
    other = reference[1] if reference is not None and reference[1] is not None else {}
    lines = plan_markdown(found)
    for notebook in chapters:
        here = [f for f in found.values() if f["chapter"] == notebook.stem]
        if not here:
            continue
        title = json.loads(notebook.read_text()).get("metadata", {}).get("studylib", {}).get("title", notebook.stem)
        lines += ["", f"## {title}", "", f"From the chapter {{doc}}`../notebooks/{notebook.stem}`:", ""]
        for f in sorted(here, key=lambda f: f["id"]):
            verdict = f" *Verdict: {f['verdict']}.*" if f.get("verdict") else ""
            note = budget_note(f, other.get(f["id"]), CONVERGED_PROFILE)
            said = f"{f['text']}{verdict}{note}"
            if f.get("lapsed"):  # a lapsed claim stays in view: the page-wide reading first, the chapter's as the weaker one
                said = (f"{_adjusted(f).lstrip()} The chapter's text, before the plan (read each lapsed difference "
                        f"as not shown): {said}")
            primary = " (a primary question)" if f["endpoint"] == "primary" else ""
            lines += [f"- **{_label(f['id'])}**{primary} — {said}", "", f"  {_bookkeeping(f)}", ""]
    return "\n".join(lines) + "\n"


def _label(finding_id: str) -> str:
    """A finding's id read as words, for the page (the id itself sits in the folded block)."""
    words = finding_id.replace("_", " ")
    return words[:1].upper() + words[1:]


def _bookkeeping(f: dict) -> str:
    """The folded block under a finding: its id and endpoint, the page-wide plan's reading with its p-values,
    and the table its numbers come from (one line of HTML: a Markdown list item ends at a blank line)."""
    plan = "" if f.get("lapsed") else escape(_adjusted(f).strip().strip("*"))
    return (f"<details><summary>id, multiplicity and source</summary>finding <code>{escape(f['id'])}</code> "
            f"({escape(f['endpoint'])} endpoint). {plan} Numbers: <code>{escape(f['source'])}</code> "
            f"in the run's results folder.</details>")


def _adjusted(f: dict) -> str:
    """The page-wide plan's verdict beside a finding (`findings.page_plan`)."""
    if f.get("p_value") is None:
        return f" *Page-wide: {f['adjusted_verdict']}.*"
    return (f" *Page-wide: {f['adjusted_verdict']} (smallest p {p_text(f['p_value'])}, {f['p_how']}; "
            f"adjusted {p_text(f['p_adjusted'])}).*")


def plan_markdown(found: dict[str, dict]) -> list[str]:
    """The findings page's opening: the pre-registered primary family, its decisions, and the secondary plan."""
    alpha = next((f["alpha"] for f in found.values() if "alpha" in f), PAGE_ALPHA)
    hypotheses = [h for f in found.values() for h in f.get("hypotheses", [])]
    n = sum(len(f["decisions"]) for f in found.values())
    lines = ["", "## How the verdicts are read", "",
             f"**Primary hypotheses**, declared in `studylib/analysis/findings/hypotheses.py` before the converged "
             f"study on this world was run: one per question of the study, each null the rule its finding's verdict "
             f"applies, one-sided, tested with {PAGE_ADJUSTMENT}'s procedure within the family (α = {alpha:g}). A "
             f"verdict that claims what a hypothesis tests stands only if that hypothesis is rejected.", "",
             ""]
    for h in hypotheses:
        estimate = f"estimate {h['estimate']:.3g}; " if h.get("estimate") is not None else ""
        decision = ("**not tested** (its numbers are missing)" if h["p"] is None else "**rejected**" if h["rejected"]
                    else "**not rejected** (inside the margin, but a relation's point estimate is below popularity)"
                    if h.get("all_estimates_at_least_zero") is False and h["p_adjusted"] < alpha else "**not rejected**")
        claim = f"*{h['claim'][:1].upper()}{h['claim'][1:]}* — " if h.get("claim") else ""
        lines += [f"- {claim}{h['statement']}. {estimate}one-sided p {p_text(h['p'])}, {PAGE_ADJUSTMENT}-adjusted "
                  f"{p_text(h['p_adjusted'])}: {decision}.", "",
                  f"  <details><summary>ids</summary>hypothesis <code>{escape(h['name'])}</code> of finding "
                  f"<code>{escape(h['finding'])}</code></details>", ""]
    lines += ["", f"**Secondary decisions**: every other test, interval and equivalence test (TOST) the findings "
              f"rest on, {n} in all, under {SECONDARY_ADJUSTMENT} (a decision's p-value is its test's, or, where "
              "the finding reports a 95 % interval, the two-sided p of a difference from zero under the normal "
              "approximation; nulls true or false by construction, such as a regret of zero, are not tested). Each "
              "finding says beside its verdict which of its declared differences survive.", ""]
    return lines


def reproducibility_markdown(workdir: Path, profile: str, params: dict, timings: dict[str, float],
                             total_seconds: float | None) -> str:
    import torch

    lines = ["", "## This build", "",
             f"- profile: `{profile}`; built {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
             f"- commit: `{_git_commit()}`",
             f"- Python {platform.python_version()} on {platform.platform()}",
             f"- device: {_device(torch)}; precision: {_precision(torch, params.get('precision', 'auto'))}", "",
             "### Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| `{k}` | `{_public(v, workdir)}` |" for k, v in sorted(params.items())]
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
    for manifest in sorted(data.rglob(MANIFEST)):
        m = json.loads(manifest.read_text())
        name, kind = manifest.parent.relative_to(data).as_posix(), m.get("scenario", m.get("format"))
        for part in m.get("shards", m.get("files", [])):
            lines.append(f"| {name} | {kind} | {part['rows']:,} | {part['file']} | `{part['sha256'][:16]}…` |")
    lines += ["", "### Package versions", "", "| package | version |", "|---|---|"]
    for pkg in ("torch", "numpy", "pandas", "pyarrow", "scipy", "SALib", "seaborn", "matplotlib", "papermill",
                "jupyter-book", "pydantic", "torchmetrics", "torchrec", "fbgemm-gpu-cpu", "fbgemm-gpu", "ipywidgets"):
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


__all__ = ["CONVERGED_PROFILE", "REPO", "abstract_markdown", "budget_markdown", "build_report", "converged_findings", "figure_alt_text",
           "findings_markdown", "plan_markdown", "reproducibility_markdown", "show_run_parameters"]
