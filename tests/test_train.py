"""Training: learning the planted truth, resume, checkpoints, several processes."""

import csv
import math
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO
from studylib.strict import shipped_config_path
from studylib.ranker.config import STUDY_CONFIG, load_config
from studylib.data.generate import generate
from studylib.errors import StudyError
from studylib.ranker.model import HeavyRanker
from studylib.ranker.scoring import score_run
from studylib.ranker.runs import CHECKPOINT, MODEL, load_checkpoint
from studylib.ranker.train import StoppingRule, TrainArgs, held_out_losses, label_names_for_heads, train

STUDY = str(shipped_config_path(STUDY_CONFIG))
FREQUENT = ["favorited", "replied", "video_playback_50"]


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """A short training run on planted data: ~300 steps of 128 examples (about 2 minutes)."""
    root = tmp_path_factory.mktemp("learn")
    from studylib.data.generate import GeneratorParams, with_world

    # A nearly non-personal world (4 % of the logit variance user×tweet): it checks that training learns
    # what the features carry within 300 steps; the personal part takes longer (chapter 2 measures it).
    base = dict(n_users=2000, n_authors=400, n_tweets=20000, rate_scale=40.0, seed=11, pair_variance=0.04)
    generate(with_world(GeneratorParams(examples=40000, seed=11), **base), root / "train", progress=False)
    generate(with_world(GeneratorParams(examples=10000, seed=12), **base), root / "eval", progress=False)
    result = train(TrainArgs(data=str(root / "train"), eval_data=str(root / "eval"), out=str(root / "run"),
                             config=STUDY, steps=300, checkpoint_every=1000, progress=False))
    return root, {row["head"].removeprefix("recap.engagement.is_"): row for row in result["eval"]}


def test_frequent_heads_come_within_003_of_the_oracle_auroc(learned):
    _, rows = learned
    for head in FREQUENT:
        row = rows[head]
        assert row["oracle_auroc"] > 0.75, head  # the planted signal is there to learn
        assert row["auroc"] >= row["oracle_auroc"] - 0.03, (head, row["auroc"], row["oracle_auroc"])
        assert row["rce"] > 0, head


def test_run_folder_holds_history_evaluation_and_provenance(learned):
    root, _ = learned
    run = root / "run"
    info = json.loads((run / "run.json").read_text())
    assert info["parameters"] == 48_115_108 and info["label_pairing"] == "by_name"
    with open(run / "history.csv") as handle:
        history = list(csv.DictReader(handle))
    assert int(history[-1]["step"]) == 300 and float(history[-1]["loss"]) < float(history[0]["loss"])
    assert (run / "eval.csv").exists() and (run / "model.pt").exists()
    assert not (run / CHECKPOINT).exists()  # the optimizer checkpoint goes once the run has finished


def test_scoring_a_trained_run(learned, tmp_path):
    root, _ = learned
    table = score_run(str(root / "run"), str(root / "eval"), ["april_2023", "x_2026_mapped"],
                      str(tmp_path / "scores.parquet"), progress=False).to_pandas()
    assert len(table) == 10000
    assert table.groupby("request_id")["rank.april_2023"].max().eq(50).all()
    import numpy as np
    from studylib.ranker.weights import HEADS, load_weights
    from studylib.schema import short_name
    # the score is exactly the weighted sum of the stored probabilities
    w = load_weights("april_2023")
    expected = sum(w.weights[h] * table[f"prob.{short_name(h)}"].astype(np.float64) for h in HEADS)
    assert np.allclose(table["score.april_2023"], expected, rtol=1e-5, atol=1e-6)
    # and a frequent head's probability follows the planted truth
    assert np.corrcoef(table["prob.favorited"], table["true_prob.favorited"])[0, 1] > 0.6


def test_positional_pairing_reproduces_the_original_defect():
    heads = load_config().heads
    labels = label_names_for_heads(heads, "positional")
    assert labels[0] == "recap.engagement.is_bookmarked" and heads[0] == "recap.engagement.is_favorited"
    assert label_names_for_heads(heads, "by_name") == list(heads)


def tiny_train(data, out, steps, resume=False, batch_size=32, keep_checkpoint=True, **kw):
    """These runs are continued later, so they keep their optimizer checkpoint when they finish."""
    return train(TrainArgs(data=str(data), out=str(out), config=STUDY, steps=steps, batch_size=batch_size,
                           checkpoint_every=3, log_every=1, resume=resume, progress=False,
                           keep_checkpoint=keep_checkpoint, **kw))


def test_resume_reaches_the_same_model_as_an_uninterrupted_run(small_data, tmp_path):
    tiny_train(small_data, tmp_path / "straight", steps=6)
    tiny_train(small_data, tmp_path / "resumed", steps=3)
    tiny_train(small_data, tmp_path / "resumed", steps=6, resume=True)
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with open(tmp_path / "resumed" / "history.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4, 5, 6]


def test_existing_run_and_missing_checkpoint_are_refused(small_data, tmp_path):
    tiny_train(small_data, tmp_path / "run", steps=1)
    with pytest.raises(StudyError, match="holds a run already; pass --resume"):
        tiny_train(small_data, tmp_path / "run", steps=2)
    with pytest.raises(StudyError, match="no checkpoint to resume from"):
        tiny_train(small_data, tmp_path / "fresh", steps=2, resume=True)


def test_a_finished_run_keeps_its_model_and_drops_the_optimizer_checkpoint(small_data, tmp_path):
    tiny_train(small_data, tmp_path / "run", steps=2, keep_checkpoint=False)
    assert (tmp_path / "run" / MODEL).exists() and not (tmp_path / "run" / CHECKPOINT).exists()
    with pytest.raises(StudyError, match="this run finished and its optimizer checkpoint was removed; train with "
                                         "--keep-checkpoint"):
        tiny_train(small_data, tmp_path / "run", steps=4, resume=True)
    with pytest.raises(StudyError, match="holds a run already"):
        tiny_train(small_data, tmp_path / "run", steps=4)


def test_held_out_loss_during_training_leaves_the_model_unchanged(small_data, tmp_path):
    tiny_train(small_data, tmp_path / "plain", steps=4)
    tiny_train(small_data, tmp_path / "watched", steps=4, val_data=str(small_data), val_every=2)
    with open(tmp_path / "watched" / "validation.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted({int(r["step"]) for r in rows}) == [2, 4] and len(rows) == 2 * 10
    assert all(float(r["log_loss"]) > 0 and float(r["oracle_log_loss"]) > 0 for r in rows)
    a = torch.load(tmp_path / "plain" / MODEL, weights_only=True)
    b = torch.load(tmp_path / "watched" / MODEL, weights_only=True)
    for key in a["model"]:  # evaluating on the side does not touch training
        assert torch.equal(a["model"][key], b["model"][key]), key
    with pytest.raises(StudyError, match="--val-every needs --val-data"):
        tiny_train(small_data, tmp_path / "unwatched", steps=1, val_every=2)


def test_stopping_rule_waits_for_patience_measurements_without_a_relative_gain():
    rule = StoppingRule(patience=2, min_delta=0.01)
    assert not rule.plateaued([0.5, 0.4])  # too few measurements to judge
    assert not rule.plateaued([0.5, 0.4, 0.3, 0.2])  # still falling
    assert not rule.plateaued([0.5, 0.4, 0.399, 0.39])  # the last one gains 2.5 % on 0.4
    assert rule.plateaued([0.5, 0.4, 0.399, 0.3985])  # two in a row gain < 1 % on 0.4
    assert rule.plateaued([0.5, 0.4, 0.45, 0.41])  # worse than the best counts as no gain
    assert not StoppingRule(patience=0, min_delta=0.01).plateaued([1.0, 1.0, 1.0])  # 0: never stop
    with pytest.raises(StudyError, match="--stop-patience must be >= 0"):
        StoppingRule(-1, 0.01).validate()
    with pytest.raises(StudyError, match=r"--stop-min-delta must be in \[0, 1\)"):
        StoppingRule(2, 1.5).validate()


def test_held_out_loss_is_the_mean_over_heads_per_step():
    rows = pd.DataFrame({"step": [4, 4, 2, 2], "head": ["a", "b", "a", "b"], "log_loss": [0.2, 0.4, 0.5, 0.7]})
    assert held_out_losses(rows) == pytest.approx({2: 0.6, 4: 0.3})
    assert list(held_out_losses(rows)) == [2, 4]


def test_training_stops_at_the_plateau_and_a_resume_continues_the_rule(small_data, tmp_path):
    # min_delta 0.9: no validation can gain 90 %, so the rule stops at the second one (step 4 of at most 12)
    stop = dict(val_data=str(small_data), val_every=2, stop_patience=1, stop_min_delta=0.9)
    result = tiny_train(small_data, tmp_path / "stopped", steps=12, **stop)
    record = json.loads((tmp_path / "stopped" / "stopping.json").read_text())
    assert result["step"] == 4 and record["stopped_at"] == 4 and record["max_steps"] == 12 and record["plateaued"]
    assert list(record["held_out_loss"]) == ["2", "4"] and record["best_step"] in (2, 4)
    saved = torch.load(tmp_path / "stopped" / MODEL, weights_only=True)
    assert saved["step"] == 4
    # the same run cut at step 3 (one validation seen) and resumed reaches the same stop and the same model
    tiny_train(small_data, tmp_path / "resumed", steps=3, **stop)
    tiny_train(small_data, tmp_path / "resumed", steps=12, resume=True, **stop)
    again = torch.load(tmp_path / "resumed" / MODEL, weights_only=True)
    assert again["step"] == 4 and all(torch.equal(saved["model"][k], again["model"][k]) for k in saved["model"])
    with pytest.raises(StudyError, match="--stop-patience needs --val-every"):
        tiny_train(small_data, tmp_path / "unwatched", steps=2, stop_patience=2)


def test_checkpoint_that_does_not_match_the_config_is_refused(small_data, tmp_path):
    tiny_train(small_data, tmp_path / "run", steps=1)
    text = shipped_config_path(STUDY_CONFIG).read_text().replace("          - 256\n", "          - 64\n")
    other = tmp_path / "smaller_towers.yaml"
    other.write_text(text)
    cfg = load_config(other)
    with pytest.raises(StudyError, match="checkpoint was made with a different model config"):
        load_checkpoint(tmp_path / "run" / CHECKPOINT, HeavyRanker(cfg.model), cfg)
    broken = tmp_path / "broken.pt"
    broken.write_bytes((tmp_path / "run" / CHECKPOINT).read_bytes()[:5000])
    with pytest.raises(StudyError, match="broken.pt: not a readable checkpoint"):
        load_checkpoint(broken, HeavyRanker(cfg.model), cfg)


def test_torchrun_with_two_processes_matches_one_process(small_data, tmp_path):
    tiny_train(small_data, tmp_path / "one", steps=2)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun"
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "studylib.cli", "train", "--data", str(small_data),
         "--out", str(tmp_path / "two"), "--config", STUDY, "--steps", "2", "--batch-size", "32",
         "--checkpoint-every", "3", "--log-every", "1", "--quiet"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert info["world_size"] == 2
    read = lambda p: list(csv.DictReader(open(p / "history.csv")))  # noqa: E731
    one, two = read(tmp_path / "one"), read(tmp_path / "two")
    assert [r["step"] for r in two] == ["1", "2"]
    # Same global batch, same initial weights: the step-1 loss differs only through
    # BatchNorm statistics taken per process (as in the original's plain DDP).
    assert float(two[0]["loss"]) == pytest.approx(float(one[0]["loss"]), rel=0.05)


def test_bad_data_writes_no_run_folder(small_data, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(small_data, bad)
    (bad / "shard-00001.parquet").unlink()
    with pytest.raises(StudyError, match="shard-00001.parquet: shard listed in manifest.json is missing"):
        tiny_train(bad, tmp_path / "run", steps=1)
    assert not (tmp_path / "run").exists()


def test_heads_start_at_their_base_rate(small_data):
    import json as _json
    from studylib.ranker.train import init_output_bias

    cfg = load_config(STUDY)
    model = HeavyRanker(cfg.model)
    rates = _json.loads((small_data / "manifest.json").read_text())["realised_rates"]
    init_output_bias(model, [rates[h] for h in model.heads])
    bias = model.towers["favorited"].layers[-1].bias
    p = rates["recap.engagement.is_favorited"]
    assert float(bias.detach()) == pytest.approx(math.log(p / (1 - p)), rel=1e-5)


@pytest.mark.parametrize("change, flag", [({"seed": 5}, "--seed 5"), ({"batch_size": 16}, "--batch-size 16"),
                                          ({"label_pairing": "positional"}, "--label-pairing 'positional'"),
                                          ({"precision": "fp32"}, "--precision 'fp32'")])
def test_resume_with_other_settings_is_refused(small_data, tmp_path, change, flag):
    tiny_train(small_data, tmp_path / "run", steps=1, precision="bf16")
    before = (tmp_path / "run" / "run.json").read_text()
    with pytest.raises(StudyError, match=f"--resume with {flag}.*but the run was started with"):
        tiny_train(small_data, tmp_path / "run", steps=2, resume=True, **{"precision": "bf16", **change})
    assert (tmp_path / "run" / "run.json").read_text() == before  # nothing rewritten


def test_resume_with_other_data_is_refused(small_data, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(small_data, other)
    tiny_train(small_data, tmp_path / "run", steps=1)
    with pytest.raises(StudyError, match="--resume with --data .*other"):
        tiny_train(other, tmp_path / "run", steps=2, resume=True)


def test_an_interrupted_study_run_continues_from_its_checkpoint(small_data, tmp_path, monkeypatch):
    """`make study` killed in the middle of a long run: the next call continues that run from its last
    checkpoint (not from step 0) and ends with the weights of a run never stopped, bit for bit."""
    from studylib.ranker import train as train_module
    from studylib.ranker.config import STUDY_CONFIG
    from studylib.ranker.runs import MODEL
    from studylib.strict import shipped_config_path
    from studylib.study import ranker_study

    raw = yaml.safe_load(shipped_config_path(STUDY_CONFIG).read_text())
    raw["training"]["checkpoint_every_n"] = 2
    config = tmp_path / "study_quick.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    run = dict(data=small_data, eval_data=None, steps=4, batch_size=64, seed=0, config=str(config), precision="fp32")

    real_save, real_train, resumed = train_module._save, train_module.train, []

    def killed_after_the_first_checkpoint(out, model, optimizer, cfg, position, precision, at_end, keep):
        real_save(out, model, optimizer, cfg, position, precision, at_end, keep)
        if position.step == 2:
            raise KeyboardInterrupt  # as Ctrl-C or a kill between two steps

    def spy(args):
        resumed.append(args.resume)
        return real_train(args)

    monkeypatch.setattr(train_module, "train", spy)
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_save", killed_after_the_first_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            ranker_study.ensure_run(tmp_path / "run", **run)
    assert (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / MODEL).exists()
    summary = ranker_study.ensure_run(tmp_path / "run", **run)
    assert resumed == [False, True] and not summary["reused"]
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["1", "2", "3", "4"]  # each step logged once
    ranker_study.ensure_run(tmp_path / "unbroken", **run)
    interrupted = torch.load(tmp_path / "run" / MODEL, weights_only=True)
    unbroken = torch.load(tmp_path / "unbroken" / MODEL, weights_only=True)
    assert interrupted["step"] == unbroken["step"] == 4 and interrupted["model"].keys() == unbroken["model"].keys()
    assert all(torch.equal(interrupted["model"][k], unbroken["model"][k]) for k in unbroken["model"])
    assert ranker_study.ensure_run(tmp_path / "run", **run)["reused"]
