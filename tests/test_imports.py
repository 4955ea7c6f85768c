"""Imports flow one way: data -> models -> training -> statistics -> scoring/evaluation -> analysis -> report
-> orchestration.

Read from the source (every import statement, also those inside functions), so a lazy import
that goes the wrong way is caught too. TwHIN depends on the data package and never the reverse.
"""

import ast
from pathlib import Path

STUDYLIB = Path(__file__).resolve().parents[1] / "studylib"

# Folders as layers, lowest first: a module may import from its own folder's layer or a lower one.
# The package's top-level modules (errors, io, schema, stats, outputs, ...) are the base; the two models
# (ranker/, twhin/) share a layer; analysis/ reads what they wrote; study/ and the command lines
# orchestrate. Nothing runs back up.
FOLDERS = {
    "base": ("studylib",),
    "data": ("studylib.data",),
    "models": ("studylib.ranker", "studylib.twhin"),
    "analysis": ("studylib.analysis",),
    "orchestration": ("studylib.study", "studylib.cli"),
}

# Within those, finer layers: a module may import from its own layer or a lower one.
LAYERS = {
    "base": ("studylib", "studylib.errors", "studylib.schema", "studylib.io", "studylib.yamlio", "studylib.strict",
             "studylib.runtime", "studylib.outputs", "studylib.stats"),
    "data": ("studylib.data",),
    "models": ("studylib.ranker", "studylib.ranker.config", "studylib.ranker.model", "studylib.ranker.bf16",
               "studylib.ranker.metrics", "studylib.ranker.runs", "studylib.ranker.args",
               "studylib.twhin", "studylib.twhin.graph", "studylib.twhin.planted", "studylib.twhin.splits",
               "studylib.twhin.config", "studylib.twhin.model", "studylib.twhin.runs", "studylib.twhin.ranks"),
    "training": ("studylib.ranker.train", "studylib.twhin.train"),
    "scoring and evaluation": ("studylib.ranker.scoring", "studylib.twhin.evaluate", "studylib.twhin.export"),
    "analysis": ("studylib.analysis", "studylib.analysis.ranking", "studylib.analysis.regret",
                 "studylib.analysis.sensitivity", "studylib.analysis.tables", "studylib.analysis.weight_search"),
    "report": ("studylib.analysis.findings", "studylib.analysis.plots", "studylib.analysis.twhin_plots",
               "studylib.analysis.weight_plots",
               "studylib.analysis.sliders", "studylib.analysis.weight_widgets"),
    "orchestration": ("studylib.study", "studylib.cli", "studylib.ranker.cli", "studylib.twhin.cli"),
}


def folder_of(module: str) -> int:
    """The folder layer of a module: studylib.ranker.cli is in ranker/ (models), studylib.stats in the base."""
    parts = module.split(".")
    name = ".".join(parts[:2]) if len(parts) > 2 or module in {p for ps in FOLDERS.values() for p in ps} else "studylib"
    for index, prefixes in enumerate(FOLDERS.values()):
        if name in prefixes:
            return index
    return 0


def module_name(path: Path) -> str:
    parts = path.relative_to(STUDYLIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of the longest matching entry (studylib.data.world -> data)."""
    best, found = -1, None
    for index, prefixes in enumerate(LAYERS.values()):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    assert found is not None, f"{module} is in no layer of tests/test_imports.py: add it where it belongs"
    return found


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("studylib"):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the project uses absolute ones")
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("studylib")}
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in STUDYLIB.rglob("*.py")}


def test_imports_flow_one_way():
    names = list(LAYERS)
    wrong = [f"{module} ({names[layer_of(module)]}) imports {target} ({names[layer_of(target)]})"
             for module, targets in import_graph().items() for target in targets
             if layer_of(target) > layer_of(module)]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_folders_are_layers_and_nothing_imports_upward():
    """The folder view of the same rule (the command lines inside ranker/ and twhin/ aside: they are
    the models' own entry points, in the orchestration layer above)."""
    names = list(FOLDERS)
    entry_points = {"studylib.ranker.cli", "studylib.twhin.cli"}
    wrong = [f"{module} ({names[folder_of(module)]}/) imports {target} ({names[folder_of(target)]}/)"
             for module, targets in import_graph().items() if module not in entry_points for target in targets
             if folder_of(target) > folder_of(module)]
    assert not wrong, "imports against the folder layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = {m: {t for t in ts if t != m and t != "studylib"} for m, ts in import_graph().items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_a_wrong_way_import(tmp_path):
    """The check itself: a data module importing from twhin is flagged."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from studylib.twhin.export import export_embeddings\n")
    assert imports_of(bad) == {"studylib.twhin.export"}
    assert layer_of("studylib.twhin.export") > layer_of("studylib.data.generate")


def test_reading_a_finished_run_does_not_import_training():
    """Scoring, evaluation and export read runs through studylib.ranker.runs / studylib.twhin.runs."""
    graph = import_graph()
    for reader in ("studylib.ranker.scoring", "studylib.twhin.evaluate", "studylib.twhin.export", "studylib.ranker.runs",
                   "studylib.twhin.runs"):
        assert not graph[reader] & {"studylib.ranker.train", "studylib.twhin.train"}, reader


def test_the_analysis_chapters_read_weights_and_results_without_loading_torch():
    """Chapters 4 and 5 rerun on every `make study WEIGHTS=`; torch's import (about a second and a
    half) is not theirs to pay: weights live in ranker/weights.py, the clipping constant in schema."""
    import subprocess
    import sys
    code = ("import sys\n"
            "from studylib import stats\n"
            "from studylib.analysis import findings, plots, ranking, regret, sensitivity, sliders, tables, "
            "weight_search\n"
            "from studylib.study import notebook, parameters, ranker_study\n"
            "from studylib.ranker.weights import HEADS, load_weights, save_weights\n"
            "load_weights('april_2023')\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_imports_inside_functions_are_only_the_declared_lazy_ones():
    """Imports sit at the top of a module; the exceptions are declared once (`studylib.LAZY_IMPORTS`)."""
    from studylib import LAZY_IMPORTS

    def lazy(module: str) -> bool:
        return any(module == m or module.startswith(m + ".") for m in LAZY_IMPORTS)

    inside = []
    for path in sorted(STUDYLIB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.ImportFrom) and sub.module and not lazy(sub.module):
                        inside.append(f"{path.relative_to(STUDYLIB.parent)}:{sub.lineno} {sub.module}")
                    elif isinstance(sub, ast.Import):
                        inside += [f"{path.relative_to(STUDYLIB.parent)}:{sub.lineno} {a.name}" for a in sub.names
                                   if not lazy(a.name)]
    assert not inside, "imports inside functions that are not in studylib.LAZY_IMPORTS:\n" + "\n".join(inside)

