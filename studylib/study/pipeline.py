"""Run the study: every notebook in order through papermill, then build the report (`studylib.study.report`).

    studylib study --profile quick|paper|full|tiny [--weights PATH] [-p NAME VALUE ...]

(`make study` runs it; `python -m studylib.study.pipeline` is the same command.)

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

One pipeline per work folder: after its arguments are checked (weights included, so a refused
run writes nothing), the pipeline locks the folder (`_build/.studylib.lock`) until the report is
built, and a second one is refused naming the holder's process id. A notebook stopped by Ctrl-C
or a killed pipeline is recorded as "interrupted" in state.json; a kernel's own output goes to
`<notebook>.kernel.log` beside the executed copy (kept when not empty), not to the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
import signal
import threading

from studylib import yamlio
from studylib.analysis.findings import PRIMARY_ENDPOINTS
from studylib.outputs import FINDINGS
from studylib.study import parameters
from studylib.errors import StudyError
from studylib.ranker.runs import MODEL
from studylib.io import (LOCK_FILE, check_text_arguments, dangling_link, held_lock, lock_holder, os_error,
                         read_json, write_json)
from studylib.study.report import REPO, build_report
from studylib.study.ranker_study import check_weights
from studylib.study import estimate
from studylib.study.paths import PIPELINE_ENV, Paths

INJECTED = parameters.INJECTED  # set by the pipeline, never by a profile
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
    raw = yamlio.read(path, "profile") or {}
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: must be a mapping of parameter names to values")
    return path, raw


def parse_override(name: str, text: str):
    """`-p NAME VALUE`: VALUE is read as YAML (300 -> int, 0.5 -> float, [1, 2] -> list, abc -> str)."""
    try:
        return yamlio.parse(text, f"-p {name}")
    except yamlio.AliasBomb:
        raise
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
        raise StudyError(f"{notebook}: parameter {name} must be {type_name}, got {yamlio.shorten(value)} "
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
        if origin.get(name) == parameters.DEFAULT_ORIGIN:  # a default of a chapter this folder may not hold
            continue
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
    # the chapters' own rules, before any notebook starts (a notebook checks the same when run by hand)
    parameters.check_all({k: v for _, values in out for k, v in values.items()},
                         {name: known[name] for name in params if name in known})
    return out


# ---------------------------------------------------------------- running


def _check_weight_parameters(steps, specs: dict[str, str | list]) -> None:
    """Weight files and presets are read minutes into the run (chapters 3 and 5): check them now,
    each error naming the first chapter that takes the parameter."""
    for name, values in specs.items():
        for spec in [values] if isinstance(values, str) else values:
            try:
                check_weights(str(spec), name)
            except StudyError as exc:
                nb = next((nb.name for nb, _ in steps if name in declared_parameters(nb)), "pipeline")
                raise StudyError(f"{nb}: {exc}") from None


def run(profile: str, overrides: list[tuple[str, str]], weights: str | None, workdir: Path,
        source: Path = REPO / "notebooks", build: bool = True, quiet: bool = False) -> Path | None:
    """The whole pipeline; returns the report's index.html (None when build=False).

    Everything the arguments decide (profile, parameters, weight files and presets) is checked
    before anything is written; then the work folder is locked (`study_lock`) until the report is
    built, so a second pipeline on the same folder is refused instead of mixing its notebooks'
    outputs with this one's."""
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    started = time.perf_counter()
    profile_path, overlay = load_profile(source / "profiles", profile)
    shown = (profile_path.relative_to(source.parent) if profile_path.is_relative_to(source.parent) else profile_path)
    params, origin = parameters.resolve(overlay, str(shown))  # the profile laid over the schema's defaults
    for name, text in overrides:
        params[name] = parse_override(name, text)
        origin[name] = f"-p {name}"
    steps = plan(source, params, origin)
    rescore = weights is not None
    if rescore:
        weights = str(Path(weights).resolve()) if Path(weights).exists() else weights
        _check_weight_parameters(steps, {"weights": [weights]})
        params["weights"], origin["weights"] = weights, "--weights"  # the report's parameter table shows what ran
        for nb, values in steps:
            if "weights" in declared_parameters(nb):
                values["weights"] = weights
    _check_weight_parameters(steps, {name: [] if name == "weights" and rescore else params.get(name, [])
                                     for name in ("weights", "presets")})
    if workdir.exists() and not workdir.is_dir():
        raise StudyError(f"--workdir {workdir}: is a file, not a folder")
    created = not workdir.exists()
    try:
        with study_lock(workdir, say) as lock:
            return _run_locked(profile, params, steps, rescore, workdir, lock, build, say, quiet, started)
    except StudyError:
        if created and _holds_only_the_lock(workdir):  # refused: leave no folder behind that this call made
            shutil.rmtree(workdir, ignore_errors=True)
        raise


def _run_locked(profile, params, steps, rescore, workdir, lock, build, say, quiet, started) -> Path | None:
    # The notebooks' kernels inherit this: their `Paths.of` then knows the pipeline runs them.
    os.environ[PIPELINE_ENV] = "1"
    executed = workdir / "_build" / "executed" / profile
    state = _load_state(executed)
    if rescore:
        paths = Paths.of(workdir, profile)
        first = next((nb.name for nb, _ in steps if is_rescore_step(nb)), "pipeline")
        if not (paths.main_run / MODEL).exists():
            raise StudyError(f"{first}: --weights needs a trained model in {paths.main_run}; "
                                f"run the pipeline once without --weights (make study PROFILE={profile})")
        for nb, _ in steps:
            if not is_rescore_step(nb) and state.get(nb.name, {}).get("status") != "ok":
                raise StudyError(f"{nb.name}: has no successful run for profile {profile}; "
                                    f"run the pipeline once without --weights")
    out_of_step = Paths.of(workdir, profile).out_of_step
    if out_of_step.exists():
        say(f"[pipeline] {out_of_step.read_text().strip()}: running every chapter")
        rescore_only = False
    else:
        rescore_only = rescore
    executed.mkdir(parents=True, exist_ok=True)

    import papermill as pm
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    given = [{k: v for k, v in {**values, "profile": profile, "workdir": str(workdir), "interactive": False}.items()
              if k in declared_parameters(nb)} for nb, values in steps]
    kinds = ["kept" if rescore_only and not is_rescore_step(nb)
             else "cached" if state.get(nb.name, {}).get("status") == "ok" and state[nb.name].get("parameters") == json.loads(json.dumps(values))
             else "fresh" for (nb, _), values in zip(steps, given)]
    expected = _say_plan(say, profile, params, [nb.stem for nb, _ in steps], kinds, build)
    for i, (nb, _) in enumerate(steps):
        if kinds[i] == "kept":
            say(f"[{nb.stem}] reused (data and model are kept when re-scoring)")
            continue
        values = given[i]
        out = executed / nb.name
        log = executed / f"{nb.stem}.kernel.log"
        say(f"[{nb.stem}] running ...")
        t0 = time.perf_counter()
        state[nb.name] = {"status": "running", "parameters": values, "pid": os.getpid()}
        _save_state(executed, state)

        def stopped(status: str) -> None:
            state[nb.name] = {"status": status, "parameters": values, "seconds": round(time.perf_counter() - t0, 1)}
            for later, _ in steps[i + 1:]:
                if later.name in state:
                    state[later.name]["status"] = "stale"
            _save_state(executed, state)

        try:
            # progress bar: cells done / total, elapsed. The kernel's log stays at ERROR: its
            # "running over TCP without encryption" warning is about a local loopback socket.
            pm.execute_notebook(str(nb), str(out), parameters=values, kernel_name="python3", cwd=str(nb.parent),
                                progress_bar=not quiet, log_output=False, report_mode=False,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                kernel_manager_class=_kernel_manager_class(lock, log))
        except PapermillExecutionError as exc:
            stopped("failed")
            evalue = str(exc.evalue).strip().splitlines()[0] if str(exc.evalue).strip() else exc.ename
            kind = "" if exc.ename == "StudyError" else f"{exc.ename}: "
            raise StudyError(f"{nb.name}: {kind}{evalue} [executed copy: {out}; report not built]") from None
        except DeadKernelError:
            stopped("failed")
            raise StudyError(f"{nb.name}: its kernel died (out of memory?) [kernel log: {log}; report not built]") from None
        except BaseException as exc:  # Ctrl-C (KeyboardInterrupt), or a failure of papermill or the kernel's start
            with _no_second_interrupt():  # a second Ctrl-C must not cut the record short
                _stop_kernels()
                stopped("failed" if isinstance(exc, Exception) else "interrupted")
            raise
        with contextlib.suppress(OSError):
            if log.stat().st_size == 0:
                log.unlink()  # the kernel had nothing to say
        seconds = time.perf_counter() - t0
        state[nb.name] = {"status": "ok", "parameters": values, "seconds": round(seconds, 1),
                          "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _save_state(executed, state)
        say(f"[{nb.stem}] done in {seconds:.0f} s -> {out}")
        _say_progress(say, started, expected, i, kinds)
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
    _say_summary(say, workdir, profile, index, time.perf_counter() - started, rescore)
    return index


# ---------------------------------------------------------------- what the run says it does


def _say_plan(say, profile: str, params: dict, stems: list[str], kinds: list[str], build: bool) -> list[float]:
    """Print the chapters, what each reuses and the estimated time; returns each chapter's estimate."""
    fresh_training = any(k == "fresh" and estimate.trains(s, params) for s, k in zip(stems, kinds))
    speed, measured = 1.0, ""
    if fresh_training:  # only then does the machine's speed matter, and is worth the quarter second
        from studylib.runtime import cpu_has_bf16
        precision = params["precision"] if params["precision"] != "auto" else ("bf16" if cpu_has_bf16() else "fp32")
        rate = estimate.matmul_rate(precision)
        speed = rate / estimate.REFERENCE["matmul_flops"]
        measured = f"; this machine multiplies at {rate / 1e9:.0f} GFLOP/s in {precision}, {speed:.2f}× the reference"
    expected = [0.0 if k == "kept" else estimate.reuse_seconds(s, params) if k == "cached" else estimate.fresh_seconds(s, params, speed)
                for s, k in zip(stems, kinds)]
    total = sum(expected) + (estimate.REPORT_SECONDS if build else 0.0)
    bound = "at most " if params.get("stop_patience") else ""  # the stopping rule may end runs early
    say(f"[plan] profile {profile}: {len(stems)} chapters, {bound}about {estimate.minutes(total)}{measured}")
    words = {"kept": "kept (weights only change chapters 3-5)", "cached": "same parameters as its last run: its cached steps are reused",
             "fresh": "runs"}
    for stem, kind, seconds in zip(stems, kinds, expected):
        say(f"[plan]   {stem:<20} {words[kind]:<58} ~{estimate.minutes(seconds)}")
    return expected


def _say_progress(say, started: float, expected: list[float], i: int, kinds: list[str]) -> None:
    """The whole study's progress after chapter i, with the time left scaled by how the estimate has held
    so far, trusted in proportion to the share of the estimated work done (half a minute over on a cached
    first chapter says little about three hours of training)."""
    elapsed = time.perf_counter() - started
    done, remaining = sum(expected[:i + 1]), sum(expected[i + 1:])
    left = remaining * progress_scale(elapsed, done, remaining)
    chapters = sum(k != "kept" for k in kinds)
    finished = sum(k != "kept" for k in kinds[:i + 1])
    say(f"[study] {finished}/{chapters} chapters in {estimate.minutes(elapsed)}; about {estimate.minutes(left)} left")


def progress_scale(elapsed: float, done: float, remaining: float) -> float:
    """The factor on the estimated time left: how the estimate held so far (elapsed / done, kept within
    ⅓–3×), weighted by the share of the estimated work already done."""
    if done <= 0:
        return 1.0
    ratio = min(3.0, max(0.33, elapsed / done))
    return 1.0 + (ratio - 1.0) * done / (done + remaining)


def _say_summary(say, workdir: Path, profile: str, index: Path, seconds: float, rescore: bool) -> None:
    """The total time, the primary findings' verdicts and what to run next."""
    say(f"[summary] the study took {estimate.minutes(seconds)} (profile {profile})")
    path = Paths.of(workdir, profile).results / FINDINGS
    with contextlib.suppress(OSError, ValueError):
        found = {f["id"]: f for f in json.loads(path.read_text())}
        for name in PRIMARY_ENDPOINTS:
            if name in found:
                f = found[name]
                adjusted = f" ({f['adjusted_verdict']})" if f.get("adjusted_verdict") else ""
                say(f"[summary]   {name}: {f.get('verdict') or 'no verdict'}{adjusted}")
    say(f"[summary] open the report: {index}")
    if not rescore:
        say("[summary] next: try other weights without retraining: make study WEIGHTS=my_weights.yaml "
            "(or the sliders in chapter 5 of the report)")
    if profile != "paper":
        say("[summary] next: the converged study: make study PROFILE=paper")


# ---------------------------------------------------------------- one pipeline per work folder


LOCKED = "_build"  # the lock file lives here (ignored by git), not in the work folder itself


@contextlib.contextmanager
def study_lock(workdir: Path, say=lambda *a: None):
    """Hold the work folder's lock (`studylib.io.held_lock` on `workdir/_build`) for the whole run;
    yields the lock file's handle. A second pipeline on the same folder is refused in one line
    naming this process; a lock left by a killed pipeline is taken over (the kernel releases a
    dead process's lock), and a notebook that pipeline left "running" in state.json is recorded
    as interrupted."""
    before = lock_holder(workdir / LOCKED)
    with held_lock(workdir / LOCKED, "study folder", name=workdir) as handle:
        if before is not None and before != os.getpid():
            say(f"[pipeline] {workdir}: the lock of process {before}, which is gone, is taken over")
        for state_file in (workdir / LOCKED / "executed").glob(f"*/{STATE}"):
            _mark_interrupted(state_file)
        yield handle


def _mark_interrupted(state_file: Path) -> None:
    """A notebook recorded as running while no pipeline holds the lock was interrupted (kill -9, power loss)."""
    try:
        state = read_json(state_file)
    except StudyError:
        return  # an unreadable state is rebuilt by the run that reads it
    changed = False
    for record in state.values():
        if isinstance(record, dict) and record.get("status") == "running":
            record["status"], changed = "interrupted", True
    if changed:
        write_json(state_file, state)


def _holds_only_the_lock(workdir: Path) -> bool:
    return all(p.is_dir() or (p.name == LOCK_FILE and p.parent == workdir / LOCKED) for p in workdir.rglob("*"))


# The kernels this process started and has not seen end: stopped at once on an interrupt, so that
# none writes into the work folder after the pipeline has gone.
_KERNELS: list = []


def _kernel_manager_class(lock, log: Path):
    """A jupyter_client kernel manager that starts the notebook's kernel (a) holding the work
    folder's lock too (its file descriptor is inherited: the lock ends only when the pipeline and
    its kernel both have), and (b) with its stdout and stderr in `log` beside the executed copy,
    not on the terminal (a kernel torn down by Ctrl-C prints tracebacks there)."""
    from jupyter_client.manager import AsyncKernelManager

    class StudyKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            with open(log, "wb") as sink:
                kw = {**kw, "stdout": sink, "stderr": sink,
                      "pass_fds": tuple(kw.get("pass_fds", ())) + (lock.fileno(),)}
                await super()._async_launch_kernel(kernel_cmd, **kw)
            _KERNELS[:] = [k for k in _KERNELS if _running(k)] + [self]

    return StudyKernelManager


def _running(manager):
    """The kernel's process while it runs, else None."""
    process = getattr(getattr(manager, "provisioner", None), "process", None)
    return process if process is not None and process.poll() is None else None


def _stop_kernels() -> None:
    """Kill the kernels still running (their whole process group: a kernel starts its own session)."""
    while _KERNELS:
        process = _running(_KERNELS.pop())
        if process is None:
            continue
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            process.wait(timeout=10)


@contextlib.contextmanager
def _no_second_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _load_state(executed: Path) -> dict:
    path = executed / STATE
    return read_json(path) if path.exists() else {}


def _save_state(executed: Path, state: dict) -> None:
    write_json(executed / STATE, state)


# ---------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=parameters.DEFAULT_PROFILE,
                        help="notebooks/profiles/<NAME>.yaml: tiny, quick (default), paper, full")
    parser.add_argument("--weights", help="re-score with this weight file (YAML) or preset; reuses data and model")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override one parameter (VALUE read as YAML); repeatable")
    parser.add_argument("--workdir", default=".",
                        help="where data/, runs/, figures/ and _build/ go (default: the current directory; "
                             "`make study` runs in the repository)")
    parser.add_argument("--no-report", action="store_true", help="run the notebooks only")


def register(sub) -> None:
    """`studylib study`: the pipeline as a command of the one command line (`studylib.cli`)."""
    p = sub.add_parser("study", help="run the whole study (every notebook, then the report)",
                       description=__doc__.splitlines()[0])
    add_arguments(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run the pipeline for parsed arguments; bad input is one line, an interrupt 130."""
    try:
        check_text_arguments(args)
        if dangling_link(args.workdir):
            raise StudyError(f"--workdir {dangling_link(args.workdir)}")
        try:
            workdir = Path(args.workdir).resolve()
        except RuntimeError as exc:  # a symbolic link loop further up the path
            raise StudyError(f"--workdir {args.workdir}: {exc}") from None
        if workdir.exists() and not workdir.is_dir():
            raise StudyError(f"--workdir {workdir}: is a file, not a folder")
        run(args.profile, [tuple(p) for p in args.parameter], args.weights, workdir, build=not args.no_report)
    except StudyError as exc:
        print(f"studylib: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"studylib: error: {os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("studylib: interrupted; the report was not built", file=sys.stderr)
        return 130
    return 0


def exit_with(code: int) -> None:
    """Leave the process with `code`. An interrupted pipeline skips the interpreter's teardown, where
    the kernel client's threads, stopped mid-message, could still print."""
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """`python -m studylib.study.pipeline ...`: the same command as `studylib study ...`."""
    parser = argparse.ArgumentParser(prog="studylib study", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    exit_with(main())
