"""Fault injection: every reader, loader and writer, given bad input or an unlucky machine, ends
with exit status 2, one line naming the path or setting and the cause, no traceback, and nothing
half-written (no temporaries, no partial outputs under final names).

The classes: concurrent writers, disk full and permission errors (simulated `OSError`s, so the
suite runs unprivileged and anywhere), outputs that are the wrong kind of path, malformed
records, out-of-range config and command-line values, and smaller CLI cases. Crafted pickles,
nulls and non-finite values, duplicate YAML keys and mismatched resumes have their own tests in
test_train.py, test_twhin.py, test_data.py, test_scoring.py and test_config.py.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from conftest import FAULT_CASES
from studylib.cli import main
from studylib.strict import load_yaml, shipped_config_path
from studylib.ranker.config import STUDY_CONFIG
from studylib.io import exclusive

STUDY = str(shipped_config_path(STUDY_CONFIG))


pytestmark = pytest.mark.usefixtures("one_thread")


def clean_refusal(code: int, stderr: str, pattern: str) -> str:
    """Exit status 2 and one stderr line matching `pattern`, no traceback; counted for the summary."""
    FAULT_CASES["tried"] += 1
    err = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert re.search(pattern, err[0]), err[0]
    FAULT_CASES["clean"] += 1
    return err[0]


def refused(capsys, argv: list[str], pattern: str) -> str:
    """Run the CLI on `argv`; it must refuse cleanly (see clean_refusal)."""
    code = main([str(a) for a in argv])
    return clean_refusal(code, capsys.readouterr().err, pattern)


def no_debris(*folders: Path) -> None:
    for folder in folders:
        if folder.exists():
            leftovers = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]
            assert not leftovers, leftovers


@pytest.fixture(scope="module")
def run(small_data, tmp_path_factory) -> Path:
    """A finished two-step ranker run on the small data set."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--data", str(small_data), "--out", str(out), "--config", STUDY, "--steps", "2",
                 "--batch-size", "32", "--quiet", "--precision", "fp32"]) == 0
    return out


@pytest.fixture(scope="module")
def graph(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("graph") / "g"
    assert main(["twhin-generate", "--out", str(out), "--edges", "20000", "--users", "300", "--authors", "60",
                 "--tweets", "2000", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def twhin_run(graph, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("twhin") / "run"
    assert main(["twhin-train", "--graph", str(graph), "--out", str(out), "--steps", "3", "--batch-size", "512",
                 "--device", "cpu", "--quiet"]) == 0
    return out


# ---------------------------------------------------------------- two writers on one folder


def test_two_generate_processes_on_one_folder_one_is_refused(tmp_path):
    """Real processes, different seeds: one writes the data set, the other exits 2 with one line."""
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "studylib.cli", "generate", "--out", str(out), "--examples", "30000",
           "--users", "300", "--authors", "60", "--tweets", "2000", "--quiet"]
    procs = [subprocess.Popen(cmd + ["--seed", str(seed)], stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    # Either the second starts after the first finished (it then finds a different data set) or
    # while it writes (the folder is locked): one line either way, never a mixed set.
    assert codes == [0, 2], results
    clean_refusal(*next(r for r in results if r[0] == 2),
                  r"another process is writing this data set|holds a different data set")
    assert main(["generate", "--out", str(out), "--examples", "30000", "--users", "300", "--authors", "60",
                 "--tweets", "2000", "--quiet", "--seed", str([s for s, (c, _) in zip((1, 2), results) if c == 0][0])]) == 0
    no_debris(out)


@pytest.mark.parametrize("command", ["generate", "train", "twhin-generate", "twhin-train"])
def test_a_locked_output_folder_is_refused(command, small_data, graph, tmp_path, capsys):
    out = tmp_path / "out"
    argv = {
        "generate": ["generate", "--out", out, "--examples", "100", "--quiet"],
        "train": ["train", "--data", small_data, "--out", out, "--steps", "1", "--quiet"],
        "twhin-generate": ["twhin-generate", "--out", out, "--edges", "1000", "--quiet"],
        "twhin-train": ["twhin-train", "--graph", graph, "--out", out, "--steps", "1", "--quiet"],
    }[command]
    with exclusive(out):  # another writer holds it
        refused(capsys, argv, r"out: another process is writing this (data set|run|graph)")
    assert [p.name for p in out.iterdir()] == [".studylib.lock"]


# ---------------------------------------------------------------- disk full, permissions


def _fail_on_write(monkeypatch, target, name, error):
    def fail(*args, **kwargs):
        raise error
    monkeypatch.setattr(target, name, fail)


ENOSPC = OSError(errno.ENOSPC, "No space left on device")
EACCES = PermissionError(errno.EACCES, "Permission denied")


@pytest.mark.parametrize("error, cause", [(ENOSPC, "no space left on the device"), (EACCES, "Permission denied")])
def test_generate_that_cannot_write_leaves_no_temporaries(error, cause, tmp_path, monkeypatch, capsys):
    _fail_on_write(monkeypatch, pq.ParquetWriter, "write_table", error)
    out = tmp_path / "data"
    refused(capsys, ["generate", "--out", out, "--examples", "200", "--quiet"], re.escape(cause))
    no_debris(out)
    assert not list(out.glob("shard-*.parquet")) and not (out / "manifest.json").exists()


@pytest.mark.parametrize("error, cause", [(ENOSPC, "no space left on the device"), (EACCES, "Permission denied")])
def test_train_that_cannot_save_leaves_no_temporaries(error, cause, small_data, tmp_path, monkeypatch, capsys):
    _fail_on_write(monkeypatch, torch, "save", error)
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", small_data, "--out", out, "--steps", "1", "--batch-size", "32",
                     "--precision", "fp32", "--quiet"], re.escape(cause))
    no_debris(out)
    assert not (out / "model.pt").exists() and not (out / "checkpoint.pt").exists()


def test_score_that_cannot_write_leaves_no_temporaries(run, small_data, tmp_path, monkeypatch, capsys):
    _fail_on_write(monkeypatch, pq, "write_table", ENOSPC)
    out = tmp_path / "scores" / "s.parquet"
    refused(capsys, ["score", "--run", run, "--data", small_data, "--out", out, "--quiet"], "no space left on the device")
    no_debris(tmp_path, run)
    assert not out.exists()


def test_twhin_export_that_cannot_write_leaves_no_temporaries(twhin_run, tmp_path, monkeypatch, capsys):
    _fail_on_write(monkeypatch, pq, "write_table", ENOSPC)
    refused(capsys, ["twhin-export", "--run", twhin_run, "--out", tmp_path / "e.parquet"], "no space left on the device")
    no_debris(tmp_path)
    assert not (tmp_path / "e.parquet").exists()


# ---------------------------------------------------------------- the wrong kind of path


def test_outputs_that_are_the_wrong_kind_of_path(small_data, run, graph, twhin_run, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    cases = [
        (["generate", "--out", a_file, "--examples", "100", "--quiet"], "a_file: is a file, not a folder"),
        (["train", "--data", small_data, "--out", a_file, "--steps", "1", "--quiet"], "a_file: is a file, not a folder"),
        (["twhin-generate", "--out", a_file, "--edges", "100", "--quiet"], "a_file: is a file, not a folder"),
        (["twhin-train", "--graph", graph, "--out", a_file, "--steps", "1", "--quiet"], "a_file: is a file, not a folder"),
        (["score", "--run", run, "--data", small_data, "--out", a_dir, "--quiet"], "a_dir: is a directory, not a file"),
        (["twhin-export", "--run", twhin_run, "--out", tmp_path / "e.csv"], r"e.csv: the embeddings file must end in .parquet"),
    ]
    for argv, pattern in cases:
        refused(capsys, argv, pattern)
    assert a_file.read_text() == "x" and not any(a_dir.iterdir())


def test_pipeline_workdir_that_is_a_file(tmp_path, capsys):
    from studylib.study.pipeline import main as pipeline_main

    a_file = tmp_path / "wd"
    a_file.write_text("x")
    clean_refusal(pipeline_main(["--profile", "tiny", "--workdir", str(a_file)]), capsys.readouterr().err,
                  "wd: is a file, not a folder")


# ---------------------------------------------------------------- malformed records


def _copy(folder: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(folder, copy)
    return copy


def _edit_json(path: Path, edit) -> None:
    payload = json.loads(path.read_text())
    path.write_text(json.dumps(edit(payload)))


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: list(m), r"manifest.json: must be a JSON object, got list"),
    (lambda m: {**m, "shards": [{"file": s["file"], "rows": s["rows"]} for s in m["shards"]]},
     r"manifest.json: shards\[0\] must name its file and sha256"),
    (lambda m: {k: v for k, v in m.items() if k != "realised_rates"}, r"realised_rates must give a number"),
    (lambda m: {**m, "shards": [{**m["shards"][0], "file": "../elsewhere.parquet"}]}, r"must be a file name inside"),
    ("{ not json", r"manifest.json: not valid JSON"),
])
def test_malformed_data_manifest(edit, pattern, small_data, tmp_path, capsys):
    data = _copy(small_data, tmp_path, "data")
    if isinstance(edit, str):
        (data / "manifest.json").write_text(edit)
    else:
        _edit_json(data / "manifest.json", edit)
    refused(capsys, ["train", "--data", data, "--out", tmp_path / "run", "--steps", "1", "--quiet"], pattern)
    assert not (tmp_path / "run").exists()


def _copy_run(run: Path, tmp_path: Path, name: str) -> Path:
    copy = _copy(run, tmp_path, name)
    shutil.rmtree(copy / "probabilities", ignore_errors=True)  # no stored probabilities: the model must load
    return copy


def test_malformed_run_records(run, small_data, tmp_path, capsys):
    broken = _copy_run(run, tmp_path, "run")
    (broken / "run.json").write_text('{"data": ')  # truncated
    refused(capsys, ["score", "--run", broken, "--data", small_data, "--out", tmp_path / "s.parquet", "--quiet"],
            r"run.json: not valid JSON \(corrupt or truncated\)")
    broken = _copy_run(run, tmp_path, "run2")
    data = (broken / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 3])  # truncated model
    refused(capsys, ["score", "--run", broken, "--data", small_data, "--out", tmp_path / "s.parquet", "--quiet"],
            r"model.pt: not a readable checkpoint")
    assert not (tmp_path / "s.parquet").exists()


class _Payload:
    """A pickle that would run a command when loaded unsafely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_crafted_ranker_model_and_checkpoint_run_nothing(run, small_data, tmp_path, capsys):
    """What score/predict read (model.pt) and what train --resume reads (checkpoint.pt)."""
    marker = tmp_path / "pwned"
    crafted = _copy_run(run, tmp_path, "crafted")
    torch.save({"model": _Payload(marker), "step": 2}, crafted / "model.pt")
    refused(capsys, ["score", "--run", crafted, "--data", small_data, "--out", tmp_path / "s.parquet", "--quiet"],
            r"model.pt: not a readable checkpoint")
    resumable = tmp_path / "resumable"
    assert main(["train", "--data", str(small_data), "--out", str(resumable), "--config", STUDY, "--steps", "1",
                 "--batch-size", "32", "--quiet", "--precision", "fp32", "--keep-checkpoint"]) == 0
    torch.save({"model": _Payload(marker), "step": 1}, resumable / "checkpoint.pt")
    refused(capsys, ["train", "--data", small_data, "--out", resumable, "--config", STUDY, "--steps", "2",
                     "--batch-size", "32", "--quiet", "--precision", "fp32", "--resume"], r"checkpoint.pt: not a readable")
    assert not marker.exists() and not (tmp_path / "s.parquet").exists()


def test_weights_files_that_are_not_yaml_text(run, small_data, tmp_path, capsys):
    binary = tmp_path / "w.yaml"
    binary.write_bytes(b"\xff\xfe\x00weights")
    for spec, pattern in [(tmp_path, "is a folder, not a YAML weights file"), (binary, "w.yaml: not UTF-8 text")]:
        refused(capsys, ["score", "--run", run, "--data", small_data, "--weights", spec, "--out",
                         tmp_path / "s.parquet", "--quiet"], pattern)


def test_truncated_and_foreign_twhin_checkpoints(twhin_run, tmp_path, capsys):
    broken = _copy(twhin_run, tmp_path, "run")
    data = (broken / "checkpoint.pt").read_bytes()
    (broken / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    refused(capsys, ["twhin-export", "--run", broken, "--out", tmp_path / "e.parquet"], "not a readable TwHIN checkpoint")
    torch.save({"step": 1, "state": {"unrelated": torch.zeros(2)}}, broken / "checkpoint.pt")
    refused(capsys, ["twhin-evaluate", "--run", broken], r"checkpoint.pt: not a checkpoint of this run's config")
    (broken / "run.json").write_text("[]")
    refused(capsys, ["twhin-export", "--run", broken, "--out", tmp_path / "e.parquet"], "run.json: must be a JSON object")
    assert not (tmp_path / "e.parquet").exists()


def test_malformed_graph_manifest(graph, tmp_path, capsys):
    broken = _copy(graph, tmp_path, "g")
    _edit_json(broken / "manifest.json", lambda m: {**m, "relations": [{"name": "fav"}]})
    refused(capsys, ["twhin-train", "--graph", broken, "--out", tmp_path / "r", "--steps", "1", "--quiet"],
            r"manifest.json: malformed tables, relations or files entries")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- values out of range


@pytest.mark.parametrize("path, value, pattern", [
    (("training", "checkpoint_every_n"), 0, r"training.checkpoint_every_n must be >= 1, got 0"),
    (("training", "train_log_every_n"), 0, r"training.train_log_every_n must be >= 1, got 0"),
    (("model", "backbone", "mask_net_config", "mask_blocks", 0, "output_size"), -4, r"output_size must be >= 1, got -4"),
    (("model", "backbone", "mask_net_config", "mask_blocks", 0, "aggregation_size"), 0, r"aggregation_size must be >= 1"),
    (("model", "tasks", "recap.engagement.is_report_tweet_clicked", "mlp_config", "dropout", "rate"), 1.5,
     r"dropout.rate must be < 1, got 1.5"),
    (("optimizer", "adam", "beta_1"), 1.5, r"optimizer.adam.beta_1 must be < 1, got 1.5"),
    (("train_data", "preprocess", "truncate_and_slice", "continuous_feature_truncation"), -5,
     r"continuous_feature_truncation must be >= 1, got -5"),
    (("train_data", "global_batch_size"), -8, r"train_data.global_batch_size must be >= 1, got -8"),
])
def test_config_values_out_of_range(path, value, pattern, small_data, tmp_path, capsys):
    raw = load_yaml(STUDY)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    import yaml

    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(raw))
    refused(capsys, ["train", "--data", small_data, "--out", tmp_path / "run", "--config", config, "--steps", "1",
                     "--quiet"], "bad.yaml: .*" + pattern)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--checkpoint-every", "0"), ("--log-every", "-1"),
                                         ("--steps", "0"), ("--eval-every", "-2")])
def test_train_counts_out_of_range(flag, value, small_data, tmp_path, capsys):
    refused(capsys, ["train", "--data", small_data, "--out", tmp_path / "run", flag, value, "--quiet"],
            rf"{flag} must be >= [01], got {value}")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- smaller cases


def test_twhin_command_values_out_of_range(graph, twhin_run, tmp_path, capsys):
    before = (twhin_run / "evaluation.csv").read_bytes() if (twhin_run / "evaluation.csv").exists() else None
    refused(capsys, ["twhin-evaluate", "--run", twhin_run, "--max-edges", "0"], "--max-edges must be >= 1, got 0")
    refused(capsys, ["twhin-evaluate", "--run", twhin_run, "--resamples", "-1"], "--resamples must be >= 0, got -1")
    refused(capsys, ["twhin-evaluate", "--run", twhin_run, "--beside", "no_equals_sign"], "--beside")
    refused(capsys, ["twhin-train", "--graph", graph, "--out", tmp_path / "r", "--steps", "0", "--quiet"],
            "--steps must be >= 1, got 0")
    after = (twhin_run / "evaluation.csv").read_bytes() if (twhin_run / "evaluation.csv").exists() else None
    assert before == after and not (tmp_path / "r").exists()


def test_a_finished_data_set_missing_a_shard_is_not_reported_as_complete(tmp_path, capsys):
    out = tmp_path / "data"
    argv = ["generate", "--out", out, "--examples", "400", "--users", "300", "--authors", "60", "--tweets", "2000",
            "--quiet"]
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    next(out.glob("shard-*.parquet")).unlink()
    refused(capsys, argv, r"shard-\d+.parquet: shard listed in manifest.json is missing; delete .* and generate again")


def test_pipeline_checks_presets_before_running_anything(tmp_path, capsys):
    from studylib.study.pipeline import main as pipeline_main

    code = pipeline_main(["--profile", "tiny", "--workdir", str(tmp_path), "-p", "presets", "[april_2023, no_such]",
                          "--no-report"])
    clean_refusal(code, capsys.readouterr().err, "parameter presets.*no_such")
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- round two: what an adversarial user tried


def _mount_tmpfs(folder: Path, size: str) -> bool:
    """A real, small file system at `folder` (root only); False where it cannot be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    """A 600 KiB tmpfs: a model checkpoint (a few MB) cannot fit. Skipped where mounting needs a
    privilege this run lacks; the simulated OSError cases above still run there."""
    where = tmp_path / "small_fs"
    if not _mount_tmpfs(where, "600k"):
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); the real full-disk case is not tried here")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


def test_a_real_full_disk_ends_training_with_one_line_and_no_temporaries(small_data, full_disk, capsys):
    out = full_disk / "run"
    refused(capsys, ["train", "--data", small_data, "--out", out, "--config", STUDY, "--steps", "2",
                     "--batch-size", "32", "--quiet", "--precision", "fp32"],
            r"could not be written \(no space left on the device\)|no space left on the device")
    no_debris(full_disk)


def test_a_real_full_disk_leaves_a_twhin_folder_that_can_be_rerun(graph, full_disk, tmp_path, capsys):
    out = full_disk / "twhin"
    refused(capsys, ["twhin-train", "--graph", graph, "--out", out, "--steps", "2", "--quiet"],
            r"no space left on the device")
    no_debris(full_disk)
    # the same folder, once there is room: started again, not "is not empty" nor "needs checkpoint.pt"
    moved = tmp_path / "twhin_after"
    shutil.copytree(out, moved)
    assert main(["twhin-train", "--graph", str(graph), "--out", str(moved), "--steps", "2", "--quiet"]) == 0


def test_torch_save_failures_are_one_line_even_when_not_oserror(small_data, tmp_path, monkeypatch, capsys):
    def failing_save(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 1024 vs 512")
    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", small_data, "--out", out, "--config", STUDY, "--steps", "2",
                     "--batch-size", "32", "--quiet", "--precision", "fp32"], r"checkpoint\.pt|model\.pt")
    no_debris(out)


def test_stored_probabilities_are_checked_before_reuse(run, small_data, tmp_path, capsys):
    scores = tmp_path / "s.parquet"
    assert main(["score", "--run", str(run), "--data", str(small_data), "--out", str(scores), "--quiet"]) == 0
    stored = next((run / "probabilities").glob("*.parquet"))
    original = stored.read_bytes()
    table = pq.read_table(stored)
    metadata = table.schema.metadata

    def tampered(change):
        pq.write_table(change(table).replace_schema_metadata(metadata), stored)

    try:
        column = next(c for c in table.column_names if c.startswith("prob."))
        for change, pattern in [
            (lambda t: t.set_column(t.column_names.index(column), column,
                                    pa.array([float("nan")] * t.num_rows, pa.float32())), r"outside \[0, 1\]"),
            (lambda t: t.slice(0, 10), r"10 rows for a data set of"),
            (lambda t: t.drop_columns(["request_id"]), r"lack the request_id column"),
            (lambda t: t.append_column("extra", pa.array(["x"] * t.num_rows)), r"a column the scorer does not write"),
        ]:
            tampered(change)
            refused(capsys, ["score", "--run", run, "--data", small_data, "--out", scores, "--quiet"],
                    r"stored probabilities .*; delete the file")
        stored.write_bytes(original[: len(original) // 2])  # truncated: computed again, not trusted
        assert main(["score", "--run", str(run), "--data", str(small_data), "--out", str(scores), "--quiet"]) == 0
    finally:
        stored.write_bytes(original)


def test_stored_probabilities_of_changed_shards_are_not_reused(run, small_data, tmp_path, capsys):
    data = _copy(small_data, tmp_path, "data")
    scores = tmp_path / "s.parquet"
    assert main(["score", "--run", str(run), "--data", str(data), "--out", str(scores), "--quiet"]) == 0
    shard = next(data.glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-100] + b"\0" * 100)  # the manifest kept, the shard changed
    refused(capsys, ["score", "--run", run, "--data", data, "--out", scores, "--quiet"], r"checksum differs")
    shard.unlink()
    refused(capsys, ["score", "--run", run, "--data", data, "--out", scores, "--quiet"], r"missing")


def test_resume_refuses_changed_inputs(small_data, tmp_path, capsys):
    from conftest import small_params
    from studylib.data.generate import generate

    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    out = tmp_path / "run"
    start = ["train", "--out", out, "--data", data, "--batch-size", "32", "--quiet", "--precision", "fp32",
             "--keep-checkpoint", "--config", STUDY]
    assert main([str(a) for a in start + ["--steps", "2"]]) == 0
    config = tmp_path / "other.yaml"  # the study config with another learning rate
    config.write_text(re.sub(r"(learning_rate:\s*)([0-9.e-]+)", r"\g<1>0.5", Path(STUDY).read_text(), count=1))
    assert config.read_text() != Path(STUDY).read_text()
    resume = ["train", "--out", out, "--data", data, "--batch-size", "32", "--quiet", "--precision", "fp32",
              "--steps", "4", "--resume"]
    refused(capsys, resume + ["--config", config], r"--resume with a config that differs")
    shutil.rmtree(data)
    generate(small_params(seed=11), data, progress=False)  # other data written at the same path
    refused(capsys, resume + ["--config", STUDY], r"--resume with other data")


def test_twhin_resume_refuses_another_graph_at_the_same_path(graph, tmp_path, capsys):
    here = tmp_path / "graph"
    shutil.copytree(graph, here)
    out = tmp_path / "twhin"
    assert main(["twhin-train", "--graph", str(here), "--out", str(out), "--steps", "2", "--checkpoint-every", "1",
                 "--quiet"]) == 0
    shutil.rmtree(here)
    assert main(["twhin-generate", "--out", str(here), "--edges", "20000", "--users", "300", "--authors", "60",
                 "--tweets", "2000", "--seed", "5", "--quiet"]) == 0
    refused(capsys, ["twhin-train", "--graph", here, "--out", out, "--steps", "4", "--resume", "--quiet"],
            r"--resume with different graph_sha256")


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def test_yaml_alias_bombs_are_refused_at_once(run, small_data, tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    pattern = r"aliases \(\*name\) expand to more than"
    refused(capsys, ["score", "--run", run, "--data", small_data, "--out", tmp_path / "s.parquet", "--weights", bomb],
            pattern)
    refused(capsys, ["train", "--data", small_data, "--out", tmp_path / "r", "--config", bomb], pattern)
    refused(capsys, ["twhin-train", "--graph", small_data, "--out", tmp_path / "t", "--config", bomb], pattern)
    from studylib.study.pipeline import main as pipeline_main
    code = pipeline_main(["--profile", "tiny", "--workdir", str(tmp_path / "w"), "-p", "top_k", BOMB])
    clean_refusal(code, capsys.readouterr().err, pattern)
    assert not (tmp_path / "r").exists() and not (tmp_path / "t").exists()


def test_long_values_are_cut_in_error_messages(small_data, tmp_path, capsys):
    config = tmp_path / "long.yaml"
    text = Path(STUDY).read_text()
    config.write_text(re.sub(r"num_train_steps: \d+", "num_train_steps: " + "x" * 5000, text, count=1))
    line = refused(capsys, ["train", "--data", small_data, "--out", tmp_path / "r", "--config", config],
                   r"num_train_steps must be int")
    assert len(line) < 300


def test_a_nan_rate_in_a_manifest_is_refused_before_training(small_data, tmp_path, capsys):
    data = _copy(small_data, tmp_path, "data")
    _edit_json(data / "manifest.json",
               lambda m: {**m, "realised_rates": {**m["realised_rates"], "recap.engagement.is_favorited": float("nan")}})
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", data, "--out", out, "--config", STUDY, "--steps", "2", "--batch-size", "32",
                     "--quiet"], r"realised_rates\.recap\.engagement\.is_favorited must be a rate in \[0, 1\]")
    assert not out.exists()


def test_a_non_finite_loss_stops_training_with_one_line(small_data, tmp_path, monkeypatch, capsys):
    from studylib.ranker import train as train_module
    monkeypatch.setattr(train_module, "multitask_loss",
                        lambda logits, labels, pos_weight: (logits.float().mean() * float("nan"),
                                                            torch.full((logits.shape[1],), float("nan"))))
    refused(capsys, ["train", "--data", small_data, "--out", tmp_path / "run", "--config", STUDY, "--steps", "2",
                     "--batch-size", "32", "--quiet", "--precision", "fp32"],
            r"the training loss became non-finite at step 1")


def test_temporaries_of_a_killed_writer_are_removed_on_the_next_start(small_data, graph, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    debris = out / ".checkpoint.pt.1234-abcd.tmp"
    debris.write_bytes(b"\0" * 1000)
    assert main(["train", "--data", str(small_data), "--out", str(out), "--config", STUDY, "--steps", "2",
                 "--batch-size", "32", "--quiet", "--precision", "fp32"]) == 0
    assert not debris.exists()
    tw = tmp_path / "twhin"
    tw.mkdir()
    (tw / ".checkpoint.pt.99-beef.tmp").write_bytes(b"\0" * 1000)
    assert main(["twhin-train", "--graph", str(graph), "--out", str(tw), "--steps", "2", "--quiet"]) == 0
    assert not list(tw.glob("*.tmp"))


def test_a_twhin_run_killed_before_its_first_checkpoint_restarts(graph, tmp_path, capsys):
    out = tmp_path / "twhin"
    assert main(["twhin-train", "--graph", str(graph), "--out", str(out), "--steps", "2", "--quiet"]) == 0
    (out / "checkpoint.pt").unlink()  # as if killed after run.json, before the first checkpoint
    refused(capsys, ["twhin-train", "--graph", graph, "--out", out, "--steps", "2", "--resume", "--quiet"],
            r"run again without --resume")
    assert main(["twhin-train", "--graph", str(graph), "--out", str(out), "--steps", "2", "--quiet"]) == 0
    assert (out / "checkpoint.pt").exists()


def test_a_shard_listed_twice_is_refused(small_data, tmp_path, capsys):
    data = _copy(small_data, tmp_path, "twice")
    _edit_json(data / "manifest.json", lambda m: {**m, "shards": m["shards"] + [m["shards"][0]]})
    refused(capsys, ["train", "--data", data, "--out", tmp_path / "r", "--config", STUDY, "--steps", "2"],
            r"lists .* a second time")


def test_files_that_are_devices_are_refused_before_reading(run, small_data, tmp_path, capsys):
    data = _copy(small_data, tmp_path, "data")
    shard = next(data.glob("*.parquet"))
    shard.unlink()
    shard.symlink_to("/dev/zero")
    refused(capsys, ["train", "--data", data, "--out", tmp_path / "r", "--config", STUDY, "--steps", "2"],
            r"not a regular file")
    manifest = tmp_path / "m" / "manifest.json"
    manifest.parent.mkdir()
    manifest.symlink_to("/dev/zero")
    refused(capsys, ["train", "--data", manifest.parent, "--out", tmp_path / "r2", "--config", STUDY, "--steps", "2"],
            r"not a regular file")
    refused(capsys, ["score", "--run", run, "--data", small_data, "--out", tmp_path / "s.parquet", "--weights",
                     "/dev/zero"], r"not a regular file")


def test_weights_that_cannot_give_a_finite_score_are_refused(run, small_data, tmp_path, capsys):
    from studylib.ranker.weights import load_weights
    published = load_weights("april_2023").as_published()
    huge = tmp_path / "huge.yaml"
    huge.write_text("".join(f"{k}: {'1' + '0' * 400}\n" for k in published))
    refused(capsys, ["score", "--run", run, "--data", small_data, "--out", tmp_path / "s.parquet", "--weights", huge],
            r"must be a finite number, got 1000.*\(401 chars\)")
    alternating = tmp_path / "alt.yaml"
    alternating.write_text("".join(f"{k}: {'-' if i % 2 else ''}1.7e+308\n" for i, k in enumerate(published)))
    refused(capsys, ["score", "--run", run, "--data", small_data, "--out", tmp_path / "s.parquet", "--weights",
                     alternating], r"must be within ±1,000,000")  # finite, but its squares are not


def test_a_refused_train_leaves_no_folder_or_records(small_data, tmp_path, capsys):
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", small_data, "--out", out, "--config", STUDY, "--steps", "2",
                     "--batch-size", "1000000000000", "--quiet"], r"--batch-size")
    assert not (out / "run.json").exists() and not (out / "config.yaml").exists()


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: {**m, "files": m["files"] + m["files"]}, r"lists edges\.parquet a second time"),
    (lambda m: {**m, "files": [{**m["files"][0], "file": "../edges.parquet"}]}, r"must be a file name inside"),
    (lambda m: {**m, "files": [{k: v for k, v in m["files"][0].items() if k != "sha256"}]}, r"has no sha256"),
])
def test_graph_files_listed_twice_outside_or_unchecked_are_refused(edit, pattern, graph, tmp_path, capsys):
    broken = _copy(graph, tmp_path, "g")
    _edit_json(broken / "manifest.json", edit)
    refused(capsys, ["twhin-train", "--graph", broken, "--out", tmp_path / "r", "--steps", "1", "--quiet"], pattern)
    assert not (tmp_path / "r").exists()


def test_request_ids_repeated_across_shards_are_refused(small_data, tmp_path, capsys):
    from studylib.io import file_sha256
    data = _copy(small_data, tmp_path, "data")
    shard = next(data.glob("*.parquet"))
    twin = data / "twin.parquet"
    shutil.copyfile(shard, twin)  # the same requests again under another file name
    _edit_json(data / "manifest.json", lambda m: {**m, "shards": m["shards"] + [
        {**m["shards"][0], "file": twin.name, "sha256": file_sha256(twin)}]})
    refused(capsys, ["train", "--data", data, "--out", tmp_path / "r", "--config", STUDY, "--steps", "2"],
            r"twin\.parquet: request id \d+ is also in")


@pytest.mark.parametrize("argv, pattern", [
    (["generate", "--examples", "100", "--signal", "inf"], r"signal must be in \[0, 10\], got inf"),
    (["generate", "--examples", "100", "--signal", "nan"], r"signal must be in \[0, 10\], got nan"),
    (["generate", "--examples", "100", "--signal", "1e300"], r"signal must be in \[0, 10\]"),
    (["generate", "--examples", "100", "--latent-dim", "100000000"], r"latent_dim must be <= 1024"),
    (["twhin-generate", "--edges", "100", "--signal", "nan"], r"signal must be in \[0, 10\]"),
])
def test_world_values_that_cannot_build_a_world_are_refused_before_writing(argv, pattern, tmp_path, capsys):
    out = tmp_path / "out"
    refused(capsys, argv + ["--out", out], pattern)
    assert not out.exists()


def test_resume_from_files_that_are_not_its_own_records(run, small_data, twhin_run, graph, tmp_path, capsys):
    copied = _copy_run(run, tmp_path, "copied")
    shutil.copyfile(copied / "model.pt", copied / "checkpoint.pt")  # weights only, no training state
    resume = ["train", "--data", small_data, "--config", STUDY, "--steps", "4", "--batch-size", "32", "--quiet",
              "--precision", "fp32", "--resume"]
    refused(capsys, resume + ["--out", copied], r"not a training checkpoint \(no optimizer")
    kept = tmp_path / "kept"
    assert main([str(a) for a in ["train", "--data", small_data, "--out", kept, "--config", STUDY, "--steps", "2",
                                  "--batch-size", "32", "--quiet", "--precision", "fp32", "--keep-checkpoint"]]) == 0
    (kept / "history.csv").write_bytes(b'garbage\x00\x01,,\n"')
    refused(capsys, resume + ["--out", kept], r"history\.csv: not a run record this resume can continue")
    tw = _copy(twhin_run, tmp_path, "tw")
    torch.save({"step": 1}, tw / "checkpoint.pt")
    refused(capsys, ["twhin-train", "--graph", graph, "--out", tw, "--steps", "4", "--batch-size", "512",
                     "--device", "cpu", "--resume", "--quiet"], r"not a TwHIN checkpoint made by `studylib twhin-train` \(no step and state\)")
    refused(capsys, ["twhin-evaluate", "--run", twhin_run, "--resamples", "1000000000000"],
            r"--resamples must be <= 100,000")


# ---------------------------------------------------------------- round two, the cases left over


def _rewrite_shards(data: Path, change) -> None:
    """Rewrite every shard of a copied data set with `change(table)`, its checksum updated in the
    manifest, as a user editing the Parquet files by hand would."""
    from studylib.io import file_sha256
    manifest = json.loads((data / "manifest.json").read_text())
    for shard in manifest["shards"]:
        path = data / shard["file"]
        pq.write_table(change(pq.read_table(path)), path)
        shard["sha256"] = file_sha256(path)
    (data / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, pattern", [
    (lambda t: t.set_column(t.schema.get_field_index("cohort"), "cohort", pa.array(range(t.num_rows), pa.int64())),
     r"column cohort must hold strings \(cohort names\), got int64"),
    (lambda t: t.slice(0, 0), r"shard holds no rows"),
])
def test_shards_a_later_step_could_not_use_are_refused_when_opened(change, pattern, run, small_data, tmp_path, capsys):
    data = _copy(small_data, tmp_path, "data")
    _rewrite_shards(data, change)
    refused(capsys, ["score", "--run", run, "--data", data, "--out", tmp_path / "s.parquet"], pattern)
    assert not (tmp_path / "s.parquet").exists()
    refused(capsys, ["train", "--data", data, "--out", tmp_path / "r", "--config", STUDY, "--steps", "2"], pattern)
    assert not (tmp_path / "r").exists()  # refused before config.yaml or run.json is written


@pytest.mark.parametrize("edit, pattern", [
    (lambda w: w.update(extra=1), r"params\.world has an unknown key 'extra'"),
    (lambda w: w.update(n_users="300"), r"params\.world\.n_users must be an integer, got str"),
    (lambda w: w.update(signal=True), r"params\.world\.signal must be a number, got bool"),
    (lambda w: w.update(rate_scale=-1.0), r"world parameter rate_scale must be in \(0, 100\]"),
])
def test_a_recorded_world_that_is_not_a_world_is_refused(edit, pattern, graph, small_data, twhin_run, tmp_path, capsys):
    broken = _copy(graph, tmp_path, "g")
    _edit_json(broken / "manifest.json", lambda m: (edit(m["params"]["world"]), m)[1])
    refused(capsys, ["twhin-train", "--graph", broken, "--out", tmp_path / "r", "--steps", "1", "--quiet"], pattern)
    assert not (tmp_path / "r").exists()
    data = _copy(small_data, tmp_path, "data")  # the ranker data's manifest records the same world
    _edit_json(data / "manifest.json", lambda m: (edit(m["params"]["world"]), m)[1])
    exported = tmp_path / "e.parquet"
    assert main(["twhin-export", "--run", str(twhin_run), "--out", str(exported)]) == 0
    from studylib.data.generate import embedding_view
    from studylib.errors import StudyError
    with pytest.raises(StudyError, match=pattern):  # the study's embedding view of that data set
        embedding_view(data, exported, tmp_path / "view")
    assert not (tmp_path / "view").exists()


def _exported_with(table: pa.Table, column: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, values).replace_schema_metadata(
        table.schema.metadata)


@pytest.mark.parametrize("break_table, pattern", [
    (lambda t: _exported_with(t, "embedding", pa.array([None] + t.column("embedding").to_pylist()[1:],
                                                          t.schema.field("embedding").type)),
     r"column embedding has 1 null value\(s\)$"),
    (lambda t: _exported_with(t, "embedding", pa.array([[None] + t.column("embedding")[0].as_py()[1:]]
                                                          + t.column("embedding").to_pylist()[1:],
                                                          t.schema.field("embedding").type)),
     r"column embedding has 1 null value\(s\) inside its vectors"),
    (lambda t: _exported_with(t, "id", pa.array([str(i) for i in t.column("id").to_pylist()])),
     r"column id must be an integer, got string"),
    (lambda t: _exported_with(t, "table", pa.array([None] + t.column("table").to_pylist()[1:], pa.string())),
     r"column table has 1 null value\(s\)"),
    (lambda t: _exported_with(t, "embedding", pa.array([",".join(map(str, v)) for v in
                                                          t.column("embedding").to_pylist()])),
     r"column embedding must be a fixed-size list of floats"),
])
def test_exported_embeddings_with_nulls_or_strings_are_refused(break_table, pattern, twhin_run, tmp_path, capsys):
    exported = tmp_path / "e.parquet"
    assert main(["twhin-export", "--run", str(twhin_run), "--out", str(exported)]) == 0
    capsys.readouterr()
    broken = tmp_path / "broken.parquet"
    pq.write_table(break_table(pq.read_table(exported)), broken)
    refused(capsys, ["generate", "--out", tmp_path / "d", "--examples", "200", "--embeddings", broken, "--quiet"],
            pattern)
    assert not (tmp_path / "d").exists()


def test_a_pickle_of_another_protocol_is_one_line(run, small_data, twhin_run, graph, tmp_path, capsys):
    import pickle
    copied = _copy_run(run, tmp_path, "p4")
    with open(copied / "checkpoint.pt", "wb") as handle:
        pickle.dump({"model": {}, "step": 1}, handle, protocol=4)  # torch warns about protocol 4 in three lines
    refused(capsys, ["train", "--data", small_data, "--out", copied, "--config", STUDY, "--steps", "4",
                     "--batch-size", "32", "--quiet", "--precision", "fp32", "--resume"],
            r"checkpoint\.pt: not a readable checkpoint \(UnpicklingError\)")
    tw = _copy(twhin_run, tmp_path, "tw")
    with open(tw / "checkpoint.pt", "wb") as handle:
        pickle.dump({"step": 1, "state": {}}, handle, protocol=4)
    refused(capsys, ["twhin-train", "--graph", graph, "--out", tw, "--steps", "4", "--batch-size", "512",
                     "--device", "cpu", "--resume", "--quiet"], r"not a readable TwHIN checkpoint \(UnpicklingError\)")


def test_files_read_whole_are_refused_past_their_size_bound(run, small_data, tmp_path, capsys, monkeypatch):
    import studylib.io
    weights = tmp_path / "w.yaml"
    weights.write_text("scored_tweets_model_weight_fav: 0.5\n" + "#" * 2000 + "\n")
    monkeypatch.setattr(studylib.io, "MAX_TEXT_BYTES", 1000)  # stands for a file of 64 MiB and more
    monkeypatch.setattr("studylib.yamlio.MAX_TEXT_BYTES", 1000)
    refused(capsys, ["score", "--run", run, "--data", small_data, "--out", tmp_path / "s.parquet", "--weights",
                     weights], r"w\.yaml: 2,\d\d\d bytes, more than a YAML weights file may hold \(1,000\)")
    monkeypatch.setattr("studylib.yamlio.MAX_TEXT_BYTES", 1 << 26)  # the shipped config is 15 KB
    data = _copy(small_data, tmp_path, "data")
    manifest = data / "manifest.json"
    manifest.write_text(manifest.read_text() + " " * 1000)
    refused(capsys, ["train", "--data", data, "--out", tmp_path / "r", "--config", STUDY, "--steps", "2"],
            r"manifest\.json: [\d,]+ bytes, more than a JSON file may hold \(1,000\)")


def _wait_for(condition, process, seconds: float = 120.0) -> None:
    import time
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, "the run ended before the point it was to be killed at"
        assert time.monotonic() < deadline, "the point to kill at never came"
        time.sleep(0.002)


def _written_since(path: Path, since_ns: int) -> bool:
    try:
        return path.stat().st_mtime_ns > since_ns
    except FileNotFoundError:
        return False


def _larger_than(path: Path, size: int) -> bool:
    """The run renames its temporary at any moment: one that vanished between listing and stat is not it."""
    try:
        return path.stat().st_size > size
    except FileNotFoundError:
        return False


def test_kill_9_at_several_points_of_a_checkpoint_write_then_resume(small_data, tmp_path):
    """A real SIGKILL as a checkpoint's temporary appears, half-way through its write and between
    two writes: the checkpoint under its real name is always whole, the next start removes the
    debris, and the resumed run ends with the model of a run never interrupted (fp32, bit for bit)."""
    import signal
    import time
    steps = 6
    argv = [sys.executable, "-m", "studylib.cli", "train", "--data", str(small_data), "--config", STUDY,
            "--steps", str(steps), "--batch-size", "32", "--checkpoint-every", "1", "--keep-checkpoint", "--quiet",
            "--precision", "fp32"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(argv + ["--out", str(straight)], check=True, env=env, capture_output=True)
    out = tmp_path / "killed"
    temporaries = lambda: [p for p in out.glob(".checkpoint.pt.*.tmp")]  # noqa: E731
    whole = straight / "checkpoint.pt"
    half = whole.stat().st_size // 2
    points = [
        ("as the temporary appears", lambda: bool(temporaries())),
        ("half-way through the write", lambda: any(_larger_than(p, half) for p in temporaries())),
        ("between two writes", lambda: _written_since(out / "checkpoint.pt", started) and not temporaries()),
    ]
    for name, point in points:
        started = time.time_ns()
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        process = subprocess.Popen(argv + ["--out", str(out)] + resume, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            _wait_for(point, process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        if (out / "checkpoint.pt").exists():  # never a half-written file under the real name
            state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
            assert 1 <= state["step"] <= steps, name
    resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
    finished = subprocess.run(argv + ["--out", str(out)] + resume, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert not list(out.glob("*.tmp")), "the resumed run left the killed writes' temporaries"
    a = torch.load(straight / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert a["step"] == b["step"] == steps
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.parametrize("downsampling, pattern", [
    ({"recap.engagement.is_favorited": {"pos": "abc", "neg": 0.5}}, r"pos_downsampling_rate must be a rate in \(0, 1\], got nothing"),
    ({"recap.engagement.is_favorited": {"pos_downsampling_rate": "abc", "neg_downsampling_rate": 0.5}},
     r"pos_downsampling_rate must be a rate in \(0, 1\], got abc"),
    ({"recap.engagement.is_favorited": {"pos_downsampling_rate": 1.0, "neg_downsampling_rate": 0.0}},
     r"neg_downsampling_rate must be a rate in \(0, 1\], got 0\.0"),
    ({"not_a_label": {}}, r"downsampling names an unknown label 'not_a_label'"),
    ([1, 2], r"downsampling must be a mapping"),
])
def test_a_manifest_downsampling_rate_that_is_not_a_rate_is_refused(downsampling, pattern, small_data, tmp_path, capsys):
    data = _copy(small_data, tmp_path, "data")
    _edit_json(data / "manifest.json", lambda m: {**m, "downsampling": downsampling})
    refused(capsys, ["train", "--data", data, "--out", tmp_path / "r", "--config", STUDY, "--steps", "1"], pattern)
    assert not (tmp_path / "r").exists()


def test_paths_that_are_not_utf8_are_refused_before_anything_is_written(tmp_path, capsys):
    out = str(tmp_path) + "/d_" + b"\xff\xfe".decode("utf-8", "surrogateescape")  # as argv delivers such bytes
    refused(capsys, ["generate", "--out", out, "--examples", "100", "--quiet"], r"--out: not UTF-8 text")
    assert list(tmp_path.iterdir()) == []
    from studylib.study import pipeline
    code = pipeline.main(["--workdir", out, "--no-report"])
    clean_refusal(code, capsys.readouterr().err, r"--workdir: not UTF-8 text")


# ---------------------------------------------------------------- round three: one study folder, one writer


def _pipeline(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "studylib.study.pipeline", "--profile", "tiny", "--workdir", str(workdir), *args]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes (the lock file, which each holder rewrites, aside)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".studylib.lock"}


def _state(workdir: Path) -> dict:
    return json.loads((workdir / "_build" / "executed" / "tiny" / "state.json").read_text())


def _progress_free(stderr: str) -> str:
    """stderr without papermill's progress bar (its lines are redrawn with carriage returns)."""
    return "\n".join(line for line in stderr.replace("\r", "\n").splitlines() if not line.startswith("Executing"))


def test_a_second_pipeline_on_a_held_study_folder_is_refused_and_a_dead_holders_lock_taken_over(tmp_path):
    """Real processes: one holds the study folder's lock (as a running pipeline does, asleep here);
    a pipeline on the same folder exits 2 at once naming it and writes nothing. Once the holder is
    killed (-9), its lock is stale: the next pipeline takes it over and records the notebook the
    dead one left "running" as interrupted."""
    import signal
    work = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from studylib.study.pipeline import study_lock\n"
        f"with study_lock(Path({str(work)!r})):\n    print('held', flush=True); time.sleep(300)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        executed = work / "_build" / "executed" / "tiny"
        executed.mkdir(parents=True)
        (executed / "state.json").write_text(json.dumps({"01_generate.ipynb": {"status": "running", "parameters": {}}}))
        before = _files(work)
        second = subprocess.run(_pipeline(work), capture_output=True, text=True, timeout=300)
        clean_refusal(second.returncode, second.stderr,
                      rf"study: another process is writing this study folder \(process {holder.pid}\)")
        assert _files(work) == before  # nothing written, the holder's state untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (work / "_build" / ".studylib.lock").read_text().strip() == str(holder.pid)  # stale: its holder is dead
    third = subprocess.run(_pipeline(work, "--weights", "april_2023", "--no-report"), capture_output=True, text=True,
                           timeout=300)
    clean_refusal(third.returncode, third.stderr, r"--weights needs a trained model")  # past the lock
    assert f"the lock of process {holder.pid}, which is gone, is taken over" in third.stdout
    assert _state(work)["01_generate.ipynb"]["status"] == "interrupted"


def _start_tiny_pipeline(work: Path) -> subprocess.Popen:
    """A tiny pipeline in its own session (as a terminal's foreground job is), waited for until its
    first notebook has been running for a few seconds."""
    import time
    import signal

    # A terminal's foreground job takes Ctrl-C; a shell's background job (`pytest ... &`) ignores SIGINT,
    # and its children inherit that: reset it, so the test does not depend on how pytest was started.
    process = subprocess.Popen(_pipeline(work, "--no-report"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    state = work / "_build" / "executed" / "tiny" / "state.json"
    _wait_for(lambda: state.exists() and "running" in state.read_text(), process)
    time.sleep(4)  # the kernel is up and the first cells run
    assert process.poll() is None
    return process


def test_ctrl_c_in_a_notebook_exits_130_with_one_line_and_records_it_interrupted(tmp_path):
    import os
    import signal
    from studylib.study.pipeline import study_lock
    work = tmp_path / "study"
    process = _start_tiny_pipeline(work)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
    out, err = process.communicate(timeout=120)
    lines = [line for line in _progress_free(err).splitlines() if line.strip()]
    assert process.returncode == 130, err[-2000:]
    assert lines == ["studylib: interrupted; the report was not built"], lines  # no kernel's traceback
    assert _state(work)["01_generate.ipynb"]["status"] == "interrupted"
    with study_lock(work):  # free at once: no kernel of the interrupted run holds the folder
        pass


def test_kill_9_of_a_pipeline_leaves_no_kernel_writing_once_its_lock_is_free(tmp_path):
    """The kernel holds the study folder's lock with its pipeline (it inherits the lock): after a
    kill -9 of the pipeline the folder stays locked until the kernel has gone too, and nothing in it
    changes once the lock is free; the next holder records the notebook as interrupted."""
    import signal
    import time
    from studylib.errors import StudyError
    from studylib.study.pipeline import study_lock
    work = tmp_path / "study"
    process = _start_tiny_pipeline(work)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    deadline = time.monotonic() + 60
    while True:
        try:
            with study_lock(work):
                before = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
                time.sleep(3)
                after = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
            break
        except StudyError as exc:
            assert f"process {process.pid}" in str(exc)  # still held, in the killed pipeline's name
            assert time.monotonic() < deadline, "the killed pipeline's kernel never let the folder go"
            time.sleep(0.2)
    changed = sorted(str(p) for p in after if before.get(p) != after[p] and p.name != ".studylib.lock")
    assert not changed, changed
    assert _state(work)["01_generate.ipynb"]["status"] == "interrupted"


# ---------------------------------------------------------------- round three: weights checked before anything is written


def _weight_file(path: Path, values) -> Path:
    from studylib.ranker.weights import load_weights
    keys = list(load_weights("april_2023").as_published())
    values = values if isinstance(values, list) else [values] * len(keys)
    path.write_text("".join(f"{k}: {v}\n" for k, v in zip(keys, values)))
    return path


@pytest.mark.parametrize("values, pattern", [
    (["1e3"] + [0.5] * 9, r"scored_tweets_model_weight_fav: YAML reads 1e3 as text.*; write 1\.0e3 or 1000$"),
    (0, r"every weight is 0, so every candidate scores 0"),
    (["1.0e+200"] + [0.5] * 9, r"scored_tweets_model_weight_fav must be within ±1,000,000 .*got 1e\+200"),
    ([0.5] * 9 + ["-1000000.5"], r"scored_tweets_model_weight_\w+ must be within ±1,000,000"),
])
def test_weights_that_would_break_the_study_are_refused_before_anything_is_written(values, pattern, tmp_path, capsys):
    """A previous study's every byte is kept, and a new work folder is not made."""
    from studylib.study.pipeline import main as pipeline_main
    weights = _weight_file(tmp_path / "w.yaml", values)
    previous = tmp_path / "previous"
    for name, content in {"_build/executed/tiny/state.json": "{}", "_build/results/tiny/findings.json": "{}",
                          "figures/03_regret.png": "png", "runs/tiny/scores/planted.parquet": "parquet"}.items():
        (previous / name).parent.mkdir(parents=True, exist_ok=True)
        (previous / name).write_text(content)
    before = _files(previous)
    for work in (previous, tmp_path / "new"):
        code = pipeline_main(["--profile", "tiny", "--workdir", str(work), "--weights", str(weights), "--no-report"])
        clean_refusal(code, capsys.readouterr().err, r"03_score\.ipynb: parameter weights: .*w\.yaml: " + pattern)
    assert _files(previous) == before and not (tmp_path / "new").exists()


def test_weights_at_the_bound_give_finite_scores_and_squares(run, small_data, tmp_path, capsys):
    """At ±B (WEIGHT_BOUND) every score and the sums of squares the analysis takes stay finite, in
    float32 as in float64; one past B is refused (above)."""
    import numpy as np
    from studylib.ranker.weights import WEIGHT_BOUND
    signs = [1, -1] * 5
    weights = _weight_file(tmp_path / "bound.yaml", [f"{s * WEIGHT_BOUND:.1f}" for s in signs])
    out = tmp_path / "s.parquet"
    assert main(["score", "--run", str(run), "--data", str(small_data), "--out", str(out), "--weights", str(weights),
                 "--quiet"]) == 0
    scores = pq.read_table(out).column("score.bound").to_numpy()
    many = np.tile(scores, 10_000)  # as many scores as a large study's candidates times seeds
    for dtype in (np.float64, np.float32):
        values = many.astype(dtype)
        assert np.isfinite(values).all() and np.isfinite((values.astype(np.float64) ** 2).sum())
        assert np.isfinite(np.square(values).sum(dtype=dtype)) and np.isfinite(values.std(dtype=dtype))


# ---------------------------------------------------------------- round three: TwHIN's last tracebacks


def test_a_twhin_batch_larger_than_the_graph_or_the_memory_is_refused_before_the_run_folder(graph, tmp_path, capsys,
                                                                                             monkeypatch):
    out = tmp_path / "run"
    refused(capsys, ["twhin-train", "--graph", graph, "--out", out, "--steps", "2", "--batch-size", "1000000000000",
                     "--device", "cpu", "--quiet"],
            r"--batch-size 1,000,000,000,000 is more than the [\d,]+ training edges of .*g; give at most [\d,]+$")
    assert not out.exists()
    monkeypatch.setattr("studylib.twhin.train._batch_bytes", lambda cfg: 1 << 40)  # a terabyte per edge
    refused(capsys, ["twhin-train", "--graph", graph, "--out", out, "--steps", "2", "--batch-size", "512",
                     "--device", "cpu", "--quiet"],
            r"--batch-size 512: a batch needs about [\d,.]+ GiB, more than this machine's [\d,.]+ GiB of memory")
    assert not out.exists()


def test_a_twhin_run_that_fails_before_its_first_checkpoint_is_one_line_and_can_be_rerun(graph, tmp_path, capsys,
                                                                                        monkeypatch):
    """A full disk at the first checkpoint (a real process: torch's is_fx_tracing notice, logged once
    per process at the first forward pass, must not become a second line) and at run.json: the
    same command then starts the run again in the same folder, without --resume or deleting it."""
    out = tmp_path / "run"
    argv = ["twhin-train", "--graph", str(graph), "--out", str(out), "--steps", "2", "--batch-size", "512",
            "--device", "cpu", "--quiet"]
    script = ("import errno, sys, torch; from studylib.cli import main\n"
              "def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')\n"
              f"torch.save = full\nsys.exit(main({argv!r}))")
    failed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    clean_refusal(failed.returncode, failed.stderr, r"run/checkpoint\.pt: no space left on the device$")
    assert not (out / "checkpoint.pt").exists() and (out / "run.json").exists()
    assert main(argv) == 0 and (out / "checkpoint.pt").exists()
    capsys.readouterr()

    import errno
    out2 = tmp_path / "run2"
    monkeypatch.setattr("studylib.twhin.train.write_json", lambda *a, **k: (_ for _ in ()).throw(
        __import__("studylib.io", fromlist=["os_error"]).os_error(OSError(errno.ENOSPC, "No space left on device"),
                                                                 out2 / "run.json")))
    argv2 = [a if a != str(out) else str(out2) for a in argv]
    refused(capsys, argv2, r"run2/run\.json: no space left on the device$")
    assert sorted(p.name for p in out2.iterdir()) == [".studylib.lock", "config.yaml"]  # no run.json, no checkpoint
    monkeypatch.undo()
    assert main(argv2) == 0 and (out2 / "checkpoint.pt").exists()


# ---------------------------------------------------------------- round three: messages that name what the user passed


@pytest.fixture
def read_only_folder(tmp_path):
    """A real read-only file system (a tmpfs mounted ro, so that root too is refused); skipped where
    mounting needs a privilege this run lacks (the simulated case below still runs there)."""
    where = tmp_path / "ro"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k,ro", "tmpfs", str(where)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    yield where
    subprocess.run(["umount", str(where)], capture_output=True)


def test_a_read_only_score_out_names_out_not_its_temporary(run, small_data, read_only_folder, capsys):
    out = read_only_folder / "s.parquet"
    line = refused(capsys, ["score", "--run", run, "--data", small_data, "--out", out, "--quiet"],
                   rf"--out {re.escape(str(out))}: Read-only file system$")
    assert ".tmp" not in line


def test_write_failures_name_the_output_not_a_temporary_or_a_copied_source(run, small_data, tmp_path, monkeypatch,
                                                                           capsys):
    import errno
    import os
    import shutil as shutil_module

    def as_pyarrow(table, where, *args, **kwargs):  # pyarrow's own wording, naming the path it opened
        raise OSError(errno.EACCES, f"Failed to open local file '{where}'. Detail: [errno 13] Permission denied")
    monkeypatch.setattr(pq, "write_table", as_pyarrow)
    out = tmp_path / "s.parquet"
    line = refused(capsys, ["score", "--run", run, "--data", small_data, "--out", out, "--quiet"],
                   rf"--out {re.escape(str(out))}: Permission denied$")
    assert ".tmp" not in line
    monkeypatch.undo()

    def full_copy(source, target, *args, **kwargs):  # as shutil reports it: the source first, then the target
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(source), None, str(target))
    monkeypatch.setattr(shutil_module, "copyfile", full_copy)
    run_dir = tmp_path / "r"
    refused(capsys, ["train", "--data", small_data, "--out", run_dir, "--config", STUDY, "--steps", "1",
                     "--batch-size", "32", "--quiet"], rf"{re.escape(str(run_dir))}/config\.yaml: no space left on the device$")


def test_symbolic_link_loops_and_dangling_links_are_named_as_such(tmp_path, capsys):
    from studylib.study.pipeline import main as pipeline_main
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    refused(capsys, ["generate", "--out", loop, "--examples", "100", "--quiet"], r"loop: is a symbolic link loop")
    refused(capsys, ["twhin-generate", "--out", dangling, "--edges", "100", "--quiet"],
            r"dangling: is a symbolic link to .*nowhere, which does not exist")
    refused(capsys, ["score", "--run", tmp_path, "--data", tmp_path, "--out", tmp_path / "s.parquet", "--weights", loop],
            r"--weights .*loop: is a symbolic link loop")
    clean_refusal(pipeline_main(["--profile", "tiny", "--workdir", str(loop), "--no-report"]), capsys.readouterr().err,
                  r"--workdir .*loop: is a symbolic link loop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "loop"]
