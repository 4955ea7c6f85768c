"""A chapter's rendered `parameters` cell shows the values its run used, not the notebook's defaults."""

from __future__ import annotations

import nbformat

from studylib.study.report import show_run_parameters

CELL = '''profile: str = "quick"
workdir: str = ".."
weights: str = "april_2023"  # a preset or a YAML file
presets: list = ["april_2023",
                 "x_2026_mapped"]
top_k: int = 10
interactive: bool = True  # sliders when run by hand'''


def _notebook(injected: dict):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(1)")]
    nb.metadata["papermill"] = {"parameters": injected}
    return nb


def test_parameters_cell_shows_the_values_the_run_used(tmp_path):
    work = tmp_path / "work"
    nb = _notebook({"profile": "tiny", "workdir": str(work), "weights": str(work / "weights" / "other.yaml"),
                    "presets": ["march_2023", str(tmp_path / "elsewhere" / "mine.yaml")], "top_k": 10,
                    "interactive": False})
    show_run_parameters(nb, work)
    lines = nb.cells[0].source.splitlines()
    assert lines[0] == 'profile: str = "tiny"  # this run (default: "quick")'
    assert lines[1] == 'workdir: str = ".."'  # never this machine's folder
    assert lines[2] == ('weights: str = "weights/other.yaml"  # this run (default: '
                        '"april_2023"); a preset or a YAML file')
    assert lines[3] == ('presets: list = ["march_2023", "mine.yaml"]  # this run (default: '
                        '["april_2023", "x_2026_mapped"])')
    assert lines[4] == "top_k: int = 10"  # unchanged where the run used the default
    assert lines[5].startswith("interactive: bool = False  # this run (default: True); sliders")
    assert str(tmp_path) not in nb.cells[0].source
    assert nb.cells[1].source == "print(1)"


def test_a_notebook_run_by_hand_is_left_alone():
    nb = _notebook({})
    del nb.metadata["papermill"]
    show_run_parameters(nb, "/nowhere")
    assert nb.cells[0].source == CELL
