"""The set-up files agree with each other."""

import re

from conftest import REPO


def pins(path):
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"^\s*-?\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", path.read_text(), re.M)}


def test_environment_yml_has_the_same_pins_as_requirements():
    required = {}
    for name in ("lock.txt", "cpu.txt"):
        required.update(pins(REPO / "requirements" / name))
    declared = pins(REPO / "environment.yml")
    assert declared == required


def test_torch_stack_is_pinned_for_cpu_and_cuda():
    cpu, cuda = pins(REPO / "requirements" / "cpu.txt"), pins(REPO / "requirements" / "cuda.txt")
    assert cpu["torch"] == cuda["torch"] == "2.13.0"
    assert cpu["fbgemm-gpu-cpu"] == cuda["fbgemm-gpu"]
    assert pins(REPO / "requirements" / "torchrec.txt") == {"torchrec": "1.9.2"}


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "make test" in (REPO / "README.md").read_text()
