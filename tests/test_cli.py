"""The `studylib` command line: help texts, one-line errors, model summary."""

import subprocess
import sys

import pytest

from studylib.cli import main

COMMANDS = ["generate", "train", "score", "model-summary"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "studylib.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: studylib {command}") and "--" in out


def test_model_summary_prints_published_count(capsys):
    assert main(["model-summary"]) == 0
    out = capsys.readouterr().out
    assert "48,115,108" in out and "96.1 MFLOP" in out


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/nonexistent/data", "--out", "/tmp/never"], "/nonexistent/data: data folder not found"),
    (["generate", "--examples", "0", "--out", "/tmp/never"], "--examples must be >= 1"),
    (["generate", "--downsample", "favorited:1:lots", "--out", "/tmp/never"], "rates must be numbers"),
    (["generate", "--downsample", "is_bookmarked", "--out", "/tmp/never"], "no downsampling rates"),
    (["train", "--data", "x", "--out", "y", "--device", "tpu"], "--device must be auto, cpu or cuda"),
])
def test_bad_input_ends_with_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("studylib: error: ") and message in lines[0]


def test_generate_command_writes_a_data_set(tmp_path):
    result = run_cli("generate", "--scenario", "random", "--examples", "200", "--users", "50", "--authors", "10",
                     "--tweets", "300", "--out", str(tmp_path / "d"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "200 examples in 1 shard(s), 4 requests, scenario random" in result.stdout
    assert (tmp_path / "d" / "manifest.json").exists()


def test_version(capsys):
    from importlib.metadata import version

    from studylib.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"studylib {version('studylib')}"
