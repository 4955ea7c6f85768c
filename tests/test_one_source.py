"""One source of truth: every study parameter's default is declared once (the schema in
`studylib.study.parameters`), every output file is named once (`studylib.outputs`), and what
the notebooks, the profiles, the tests and the documents hold derives from those."""

from __future__ import annotations

import json
import re

import papermill as pm
import pytest
import yaml

from studylib import outputs
from studylib.errors import StudyError
from studylib.study import parameters
from studylib.study.pipeline import REPO, notebooks

NOTEBOOKS = REPO / "notebooks"
PROFILES = NOTEBOOKS / "profiles"
RESULT_NAME = re.compile(r"\b\d\d[b]?_\w+\.csv\b")


def _code_cells(notebook) -> list[str]:
    """A notebook's code cells, the generated parameters cell left out."""
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells
            if c["cell_type"] == "code" and "parameters" not in c.get("metadata", {}).get("tags", [])]


# ---------------------------------------------------------------- parameters


def test_every_parameters_cell_is_the_one_the_schema_generates():
    for nb in notebooks(NOTEBOOKS):
        assert parameters.cell_of(nb) == parameters.expected_cell(nb), (
            f"{nb.name}: its parameters cell differs from the schema's; run `python -m studylib.study.parameters`")
        declared = pm.inspect_notebook(str(nb))
        for name, info in declared.items():  # what papermill and JupyterLab read is the schema's default
            if name in parameters.FIELDS:
                assert yaml.safe_load(info["default"]) == parameters.DEFAULTS[name], (nb.name, name)
    chapters = {c for name in parameters.FIELDS for c in parameters.chapters_of(name)}
    assert chapters == {nb.stem for nb in notebooks(NOTEBOOKS)}  # the schema names real chapters only


def test_profiles_are_overlays_naming_only_what_differs_from_the_defaults():
    for path in sorted(PROFILES.glob("*.yaml")):
        overlay = yaml.safe_load(path.read_text()) or {}
        assert set(overlay) <= set(parameters.FIELDS), path.name
        copies = [name for name, value in overlay.items() if value == parameters.DEFAULTS[name]]
        assert not copies, f"{path.name} repeats the defaults of {copies}"
        parameters.check_all(overlay, {name: path.name for name in overlay})
    assert not yaml.safe_load((PROFILES / "quick.yaml").read_text())  # quick is the defaults themselves


def test_no_notebook_declares_a_study_parameter_again():
    """Outside its generated cell a notebook reads a parameter, never assigns it a value of its own."""
    for nb in notebooks(NOTEBOOKS):
        for source in _code_cells(nb):
            for name in parameters.FIELDS:
                assert not re.search(rf"^{name}\s*(:\s*\w+\s*)?=[^=]", source, re.M), f"{nb.name} assigns {name}"


def test_a_profile_value_that_breaks_the_schema_names_the_profile_file(tmp_path):
    (tmp_path / "profiles").mkdir()
    for name in ("bad", "typo", "injected"):
        text = {"bad": "seeds: 0\n", "typo": "stepz: 3\n", "injected": "workdir: /\n"}[name]
        (tmp_path / "profiles" / f"{name}.yaml").write_text(text)
    from studylib.study.pipeline import load_profile

    with pytest.raises(StudyError, match=r"bad.yaml: parameter seeds must be >= 1, got 0"):
        values, origin = parameters.resolve(load_profile(tmp_path / "profiles", "bad")[1], "bad.yaml")
        parameters.check_all(values, origin)
    with pytest.raises(StudyError, match=r"typo.yaml: unknown parameter stepz"):
        parameters.resolve(load_profile(tmp_path / "profiles", "typo")[1], "typo.yaml")
    with pytest.raises(StudyError, match=r"injected.yaml: parameter workdir is set by the pipeline"):
        parameters.resolve(load_profile(tmp_path / "profiles", "injected")[1], "injected.yaml")


def test_the_schema_refers_to_the_training_and_world_defaults_it_shares():
    from studylib.data.world import WorldParams
    from studylib.ranker.args import TrainArgs

    for name in ("stop_min_delta", "stop_patience", "val_every", "precision"):
        assert parameters.DEFAULTS[name] == getattr(TrainArgs, name), name
    assert parameters.DEFAULTS["pair_variance"] == WorldParams.pair_variance
    source = (REPO / "studylib" / "study" / "parameters.py").read_text()
    assert "param(TrainArgs.stop_min_delta" in source and "param(WorldParams.pair_variance" in source


# ---------------------------------------------------------------- outputs


def test_result_files_are_named_only_in_the_registry():
    registry = REPO / "studylib" / "outputs.py"
    offenders = [f"{p.relative_to(REPO)}: {m}" for p in sorted((REPO / "studylib").rglob("*.py")) if p != registry
                 for m in RESULT_NAME.findall(p.read_text())]
    offenders += [f"{nb.name}: {m}" for nb in notebooks(NOTEBOOKS) for cell in _code_cells(nb)
                  for m in RESULT_NAME.findall(cell)]
    offenders += [f"{p.name}: {m}" for p in sorted((REPO / "tests").glob("*.py")) if p.name != "test_one_source.py"
                  for m in RESULT_NAME.findall(p.read_text())]
    assert not offenders, "result files named outside studylib/outputs.py:\n" + "\n".join(offenders)
    for nb in notebooks(NOTEBOOKS):  # figures too: a notebook saves each by its registered name
        for cell in _code_cells(nb):
            assert not re.search(r"plots\.save\(\s*\w+\s*,\s*f?[\"']", cell), f"{nb.name}: a figure saved by literal"


def test_documents_name_only_registered_files():
    """A file name in the README or docs/ (`NN_name.csv`, `.png`, `.svg`) is a registered output; a
    bare `NN_name` is a registered figure or a chapter."""
    files = set(outputs.RESULTS) | set(outputs.FIGURE_FILES)
    stems = set(outputs.FIGURES) | {nb.stem for nb in notebooks(NOTEBOOKS)}
    unknown = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for name in set(re.findall(r"\b\d\d[b]?_[a-z_0-9]+(?:\.csv|\.png|\.svg|\.ipynb)?\b", doc.read_text())):
            if name.endswith(".ipynb"):
                ok = name[:-6] in stems
            else:
                ok = name in files if name.endswith((".csv", ".png", ".svg")) else name in stems
            if not ok:
                unknown.append(f"{doc.name}: {name}")
    assert not unknown, "documents name files the registry does not have:\n" + "\n".join(sorted(unknown))


def test_every_registered_result_is_written_by_a_notebook():
    written = "\n".join(cell for nb in notebooks(NOTEBOOKS) for cell in _code_cells(nb))
    for key, name in vars(outputs.Result).items():
        if key.isupper():
            assert f"Result.{key}" in written, f"{name} is registered but no notebook writes or reads it"
    for key in vars(outputs.Figure):
        if key.isupper():
            assert f"Figure.{key}" in written, f"figure {key} is registered but no notebook saves it"
