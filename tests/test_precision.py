"""Precision: bf16 autocast where the hardware has it, fp32 master weights, deterministic on CPU."""

import json

import pytest
import torch
from conftest import small_params

from studylib import runtime
from studylib.ranker.bf16 import Bf16WorkingCopies
from studylib.cli import main
from studylib.strict import shipped_config_path
from studylib.ranker.config import STUDY_CONFIG, load_config
from studylib.errors import StudyError
from studylib.ranker.model import HeavyRanker
from studylib.ranker.scoring import score_run
from studylib.data.generate import generate
from studylib.data.reader import Reader, open_dataset
from studylib.ranker.runs import load_checkpoint, load_run, predict
from studylib.ranker.train import TrainArgs, build_optimizer, make_train_step, multitask_loss, set_learning_rates, train

STUDY = str(shipped_config_path(STUDY_CONFIG))
CPU = torch.device("cpu")


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert runtime.resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.resolve_precision("auto", CPU) == "fp32"
    assert "lacks bf16 instructions" in runtime.precision_reason("auto", CPU)  # what run.json records
    assert runtime.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert runtime.resolve_precision("bf16", CPU) == "bf16" and runtime.resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(StudyError, match="--precision must be one of auto, fp32, bf16, got 'fp16'"):
        runtime.resolve_precision("fp16", CPU)


def test_autocast_is_bf16_only_when_asked():
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with runtime.Runtime(CPU, "bf16").autocast():
        assert (x @ w).dtype == torch.bfloat16
    with runtime.Runtime(CPU, "fp32").autocast():
        assert (x @ w).dtype == torch.float32


def _run(data, out, precision, steps, eval_data, keep_checkpoint=False):
    return train(TrainArgs(data=str(data), eval_data=str(eval_data), out=str(out), config=STUDY, steps=steps,
                           batch_size=64, precision=precision, checkpoint_every=100, progress=False,
                           keep_checkpoint=keep_checkpoint))


def test_bf16_training_keeps_fp32_weights_is_deterministic_and_recorded(small_data, tmp_path):
    # Two steps, and 500 examples to evaluate and score: on a CPU without bf16 instructions every bf16
    # matrix product is emulated (a backward pass at batch 64 takes about 10 s on the 2-core AMD EPYC
    # CI machine, against under 1 s in fp32).
    few = tmp_path / "few"
    generate(small_params(examples=500), few, progress=False)  # the same world as small_data
    first = _run(small_data, tmp_path / "a", "bf16", 2, few, keep_checkpoint=True)
    again = _run(small_data, tmp_path / "b", "bf16", 2, few)
    fp32 = _run(small_data, tmp_path / "c", "fp32", 2, few)
    assert json.loads((tmp_path / "a" / "run.json").read_text())["precision"] == "bf16"
    assert json.loads((tmp_path / "a" / "run.json").read_text())["precision_reason"] == "bf16: asked for (--precision bf16)"
    assert json.loads((tmp_path / "c" / "run.json").read_text())["precision"] == "fp32"
    aurocs = [[row["auroc"] for row in r["eval"]] for r in (first, again)]
    assert aurocs[0] == aurocs[1]  # same seed, same metrics on the CPU
    assert all(torch.isfinite(torch.tensor(row["log_loss"])) for row in first["eval"])
    assert [row["rce"] for row in fp32["eval"]] != [row["rce"] for row in first["eval"]]  # bf16 really ran
    model, cfg, _, rt = load_run(tmp_path / "a", precision="bf16")
    assert rt.precision == "bf16" and all(p.dtype == torch.float32 for p in model.parameters())
    # model.pt holds the Linear weights in bf16, as the forward used them: half the bytes, the
    # same bf16 predictions as the fp32 masters of the kept checkpoint.
    saved = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    assert saved["weights_precision"] == "bf16"
    assert saved["model"]["towers.favorited.layers.0.weight"].dtype == torch.bfloat16
    assert (tmp_path / "a" / "model.pt").stat().st_size < 0.6 * (tmp_path / "c" / "model.pt").stat().st_size
    masters = HeavyRanker(cfg.model)
    load_checkpoint(tmp_path / "a" / "checkpoint.pt", masters, cfg)
    masters.eval()
    reader = lambda: Reader(open_dataset(few), 256, shuffle=False)  # noqa: E731
    assert torch.equal(predict(model, reader(), rt)["probabilities"], predict(masters, reader(), rt)["probabilities"])
    table = score_run(str(tmp_path / "a"), str(few), ["april_2023"], str(tmp_path / "s.parquet"),
                      progress=False, precision="bf16")
    assert table.column("prob.favorited").type == "float"


def test_cli_refuses_a_bad_precision(small_data, tmp_path, capsys):
    code = main(["train", "--data", str(small_data), "--out", str(tmp_path / "r"), "--steps", "1",
                 "--precision", "half", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--precision must be one of auto, fp32, bf16, got 'half'" in err[0]
    assert not (tmp_path / "r").exists()


def test_bf16_working_copies_give_the_autocast_step_bit_for_bit():
    """Persistent bf16 copies remove the per-step casts without changing one bit of the update."""
    cfg = load_config(STUDY)
    g = torch.Generator().manual_seed(3)
    features = {"continuous": torch.rand(32, 2117, generator=g) * 50, "binary": (torch.rand(32, 59, generator=g) < 0.3).float(),
                **{k: torch.randn(32, 200, generator=g) for k in ("user_embedding", "user_eng_embedding", "author_embedding")}}
    labels = (torch.rand(32, 10, generator=g) < 0.2).float()
    finals = []
    for use_copies in (False, True):
        torch.manual_seed(0)
        model = HeavyRanker(cfg.model).train()
        optimizer, schedules = build_optimizer(model, cfg)
        set_learning_rates(optimizer, schedules, 1000)
        bf16 = runtime.Runtime(CPU, "bf16")
        step = make_train_step(model, optimizer, bf16, model.pos_weight) if use_copies else None
        for _ in range(3):
            if step:  # what training runs
                step(features, labels)
                continue
            with bf16.autocast():  # the reference: plain autocast, casting every weight each step
                logits = model(features)["logits"]
            loss, _ = multitask_loss(logits, labels, model.pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        finals.append(model.state_dict())
    working = Bf16WorkingCopies(model)
    assert len(working.masters) == sum(isinstance(m, torch.nn.Linear) for m in model.modules()) * 2
    assert all(c.dtype == torch.bfloat16 and torch.equal(c, m.to(torch.bfloat16)) for c, m in zip(working.copies, working.masters))
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_freed_training_memory_is_reused_without_page_faults():
    """After keep_freed_memory (training's start_runtime on CPU), blocks freed by one step are
    reused by the next instead of being faulted in again from the kernel."""
    import resource

    assert runtime.keep_freed_memory()  # glibc here: applied

    def step():  # a step's worth of freed-and-reallocated buffers, each under glibc's 32 MiB ceiling
        buffers = [torch.ones(4 << 20) for _ in range(12)]  # 12 x 16 MiB
        return sum(float(b[-1]) for b in buffers)

    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        assert step() == 12.0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 12 * 4096 // 10  # touching 192 MiB afresh would take ~49,000 faults per step
