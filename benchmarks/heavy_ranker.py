"""Heavy Ranker throughput against this machine's own limits, measured in the same run.

Prints, from one run each:
- training examples/s in fp32 and in bf16 (as `studylib.ranker.train` runs it: autocast on persistent
  bf16 copies of the weights; plain autocast beside it), each beside the machine's matrix-multiply
  rate in the same precision at the model's own GEMM shapes (forward and both backward GEMMs
  of every Linear layer at the same batch), and the bf16 speed-up (goals on this project's
  2-core CPU with avx512_bf16: speed-up >= 1.8, bf16 model FLOP/s >= 0.7 of the bf16 GEMM
  rate); the fp32 and bf16 step times beside their floors: those GEMMs at that rate plus the
  update's memory traffic at the measured copy bandwidth;
- reader examples/s (goal: >= 10x what training consumes);
- generator examples/s (goal: >= 20k/s on the 2-core CPU machine);
- on CUDA, the bf16 model FLOP utilization against the card's published dense bf16 peak
  (goal >= 35%).

    .venv/bin/python benchmarks/heavy_ranker.py [--batch-size 128] [--steps 15] [--rounds 5] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from studylib.ranker.config import load_config
from studylib.data.generate import GeneratorParams, generate, with_world
from studylib.data.reader import Reader, open_dataset
from studylib.ranker.bf16 import linear_parameters
from studylib.ranker.model import HeavyRanker, forward_flops, linear_shapes
from studylib.runtime import Runtime, keep_freed_memory, resolve_device
from studylib.ranker.train import build_optimizer, make_train_step, multitask_loss, set_learning_rates

# Published dense (no sparsity) bf16 tensor-core peaks, FLOP/s, for the MFU line.
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def gemm_rate(shapes, batch: int, device: torch.device, dtype: torch.dtype, repeats: int) -> float:
    """FLOP/s of the training step's GEMMs alone: for each Linear(in, out), the forward
    [B,in]x[in,out], the input gradient [B,out]x[out,in] and the weight gradient [in,B]x[B,out]."""
    total_flops, total_time = 0.0, 0.0
    for n_in, n_out in shapes:
        x = torch.randn(batch, n_in, device=device, dtype=dtype)
        w = torch.randn(n_in, n_out, device=device, dtype=dtype)
        g = torch.randn(batch, n_out, device=device, dtype=dtype)
        for a, b in ((x, w), (g, w.T), (x.T, g)):
            total_time += timed(lambda: torch.mm(a, b), device, repeats)
            total_flops += 2.0 * a.shape[0] * a.shape[1] * b.shape[1]
    return total_flops / total_time


def copy_bandwidth(device: torch.device, dtype: torch.dtype = torch.float32, mib: int = 512) -> float:
    """Bytes/s of a large tensor copy (one read + one write per element): the memory bound."""
    src = torch.empty(mib * 2**20 // 4, device=device, dtype=dtype).uniform_()
    dst = torch.empty_like(src)
    return 2 * src.numel() * src.element_size() / timed(lambda: dst.copy_(src), device, repeats=5)


def adam_bytes(model: torch.nn.Module) -> int:
    """Memory traffic of one fused Adam step: read param, grad, exp_avg, exp_avg_sq; write three back."""
    return 7 * 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)


def synthetic_batch(batch: int, device: torch.device) -> tuple[dict, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    features = {
        "continuous": torch.rand(batch, 2117, generator=g) * 100,
        "binary": (torch.rand(batch, 59, generator=g) < 0.3).float(),
        **{k: torch.randn(batch, 200, generator=g) for k in ("user_embedding", "user_eng_embedding", "author_embedding")},
    }
    labels = (torch.rand(batch, 10, generator=g) < 0.1).float()
    return {k: v.to(device) for k, v in features.items()}, labels.to(device)


def training_rate(batch: int, steps: int, device: torch.device, precision: str) -> float:
    """Examples/s of full training steps (forward, backward, fused Adam) on in-memory batches, as
    `studylib.ranker.train` runs them. `bf16-autocast` is plain autocast, casting every weight each step."""
    cfg = load_config()
    model = HeavyRanker(cfg.model).to(device).train()
    optimizer, schedules = build_optimizer(model, cfg)
    set_learning_rates(optimizer, schedules, 10**6)
    features, labels = synthetic_batch(batch, device)
    pos_weight = model.pos_weight.to(device)
    runtime = Runtime(device, "bf16" if precision.startswith("bf16") else "fp32")
    if precision == "bf16-autocast":
        def step():
            with runtime.autocast():
                logits = model(features)["logits"]
            loss, _ = multitask_loss(logits, labels, pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    else:
        train_step = make_train_step(model, optimizer, runtime, pos_weight)
        step = lambda: train_step(features, labels)  # noqa: E731
    return batch / timed(step, device, repeats=steps)


def reader_rate(data: Path, batch: int) -> float:
    reader = Reader(open_dataset(data), batch, shuffle=True, seed=0)
    start, rows = time.perf_counter(), 0
    for b in reader.epoch(0):
        rows += len(b)
    return rows / (time.perf_counter() - start)


def generator_rate(out: Path, examples: int) -> float:
    params = with_world(GeneratorParams(scenario="planted", examples=examples, seed=1), rate_scale=20.0)
    start = time.perf_counter()
    generate(params, out, progress=False)
    return examples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (published: 128)")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps")
    parser.add_argument("--rounds", type=int, default=5, help="GEMM-rate/training measurement pairs")
    parser.add_argument("--examples", type=int, default=40000, help="examples for the generator/reader runs")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as training's start_runtime does
    cfg = load_config()
    model = HeavyRanker(cfg.model)
    flops_per_example = 3 * forward_flops(model)  # forward + backward ≈ 3x forward
    shapes = linear_shapes(model)
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "threads": torch.get_num_threads(), "batch_size": args.batch_size}

    print(f"device: {results['device']}  threads: {results['threads']}  batch: {args.batch_size}")
    # A shared machine's rate drifts by tens of percent within a minute, so the GEMM rates, the
    # training rates and the copy bandwidth are measured back to back in each round and compared
    # within it.
    rounds = []
    for _ in range(args.rounds):
        gemm = gemm_rate(shapes, args.batch_size, device, torch.float32, repeats=5)
        train = training_rate(args.batch_size, args.steps, device, "fp32")
        gemm16 = gemm_rate(shapes, args.batch_size, device, torch.bfloat16, repeats=5)
        train16 = training_rate(args.batch_size, args.steps, device, "bf16")
        autocast16 = training_rate(args.batch_size, args.steps, device, "bf16-autocast")
        bandwidth = copy_bandwidth(device)
        rounds.append({"bandwidth": bandwidth, "speedup": train16 / train, "fp32_fraction": train * flops_per_example / gemm,
                       "bf16_fraction": train16 * flops_per_example / gemm16, "gemm": gemm, "train": train,
                       "gemm16": gemm16, "train16": train16, "autocast16": autocast16,
                       "autocast_speedup": autocast16 / train})
    median = sorted(rounds, key=lambda r: r["speedup"])[len(rounds) // 2]  # the median round
    gemm, train, gemm16, train16 = median["gemm"], median["train"], median["gemm16"], median["train16"]
    bandwidth = median["bandwidth"]
    results.update(gemm_fp32_flops=gemm, train_fp32_examples_per_s=train, train_fp32_flops=train * flops_per_example,
                   train_fp32_vs_gemm=median["fp32_fraction"], gemm_bf16_flops=gemm16,
                   train_bf16_examples_per_s=train16, train_bf16_flops=train16 * flops_per_example,
                   speedup_bf16_over_fp32=median["speedup"], bf16_fraction_of_gemm=median["bf16_fraction"],
                   speedup_rounds=[r["speedup"] for r in rounds],
                   bf16_fraction_rounds=[r["bf16_fraction"] for r in rounds],
                   train_bf16_autocast_examples_per_s=median["autocast16"],
                   speedup_bf16_autocast_over_fp32=median["autocast_speedup"])
    span = lambda key: f"{min(r[key] for r in rounds):.2f}-{max(r[key] for r in rounds):.2f}"  # noqa: E731
    print(f"machine fp32 GEMM rate at the model's shapes   {gemm / 1e9:10.1f} GFLOP/s")
    print(f"training (fp32)                                {train:10.1f} examples/s "
          f"= {median['fp32_fraction']:.2f} of the fp32 GEMM rate (rounds {span('fp32_fraction')})")
    print(f"machine bf16 GEMM rate at the model's shapes   {gemm16 / 1e9:10.1f} GFLOP/s")
    print(f"training (bf16, persistent bf16 weight copies) {train16:10.1f} examples/s "
          f"= {median['bf16_fraction']:.2f} of the bf16 GEMM rate (goal >= 0.70; rounds {span('bf16_fraction')})")
    print(f"  plain bf16 autocast (casts every step)       {median['autocast16']:10.1f} examples/s "
          f"= {median['autocast_speedup']:.2f}x fp32 (rounds {span('autocast_speedup')})")
    print(f"  bf16 over fp32                               {median['speedup']:10.2f}x "
          f"(goal >= 1.8; median of {len(rounds)} rounds, range {span('speedup')})")
    # The fp32 step's floor: its GEMMs at the measured rate plus the optimizer's traffic at the
    # measured bandwidth (Adam reads and writes every parameter's four tensors).
    floor = args.batch_size * flops_per_example / gemm + adam_bytes(model) / bandwidth
    step = args.batch_size / train
    results.update(copy_bandwidth_bytes_per_s=bandwidth, step_seconds=step, step_floor_seconds=floor,
                   step_floor_fraction=floor / step)
    print(f"machine copy bandwidth                         {bandwidth / 1e9:10.1f} GB/s "
          f"(rounds {min(r['bandwidth'] for r in rounds) / 1e9:.1f}-{max(r['bandwidth'] for r in rounds) / 1e9:.1f})")
    print(f"  fp32 step {step * 1e3:.0f} ms vs its floor {floor * 1e3:.0f} ms (GEMMs at the GEMM rate + "
          f"Adam's {adam_bytes(model) / 1e9:.2f} GB at the copy bandwidth) = {floor / step:.2f} of the machine's limit")
    # The bf16 step's floor: its GEMMs at the bf16 rate plus the update's traffic, which bf16 does
    # not shrink (Adam's fp32 state) and adds to (the bf16 gradients cast into the fp32 masters'
    # buffers, 2 + 4 bytes, and the masters rounded into the bf16 copies, 4 + 2 bytes, per Linear
    # parameter). A step at its floor would reach `bf16_fraction_at_floor` of the bf16 GEMM rate.
    linear = sum(p.numel() for p in linear_parameters(model).values())
    update16 = adam_bytes(model) + 12 * linear
    gemm_time16 = args.batch_size * flops_per_example / gemm16
    floor16 = gemm_time16 + update16 / bandwidth
    step16 = args.batch_size / train16
    results.update(bf16_step_seconds=step16, bf16_step_floor_seconds=floor16, bf16_step_floor_fraction=floor16 / step16,
                   bf16_fraction_at_floor=gemm_time16 / floor16)
    print(f"  bf16 step {step16 * 1e3:.0f} ms vs its floor {floor16 * 1e3:.0f} ms (GEMMs at the bf16 rate + "
          f"{update16 / 1e9:.2f} GB of update traffic) = {floor16 / step16:.2f} of the machine's limit; "
          f"a step at its floor would reach {gemm_time16 / floor16:.2f} of the bf16 GEMM rate")
    if device.type == "cuda":
        name = next((k for k in BF16_PEAK if k in results["device"]), None)
        if name:
            results["mfu_bf16"] = train16 * flops_per_example / BF16_PEAK[name]
            print(f"  model FLOP utilization vs {name} dense bf16 peak: {results['mfu_bf16']:.1%} (goal >= 35%)")

    scratch = Path(tempfile.mkdtemp(prefix="studylib-bench-"))
    try:
        gen = generator_rate(scratch / "data", args.examples)
        read = reader_rate(scratch / "data", args.batch_size)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results.update(generator_examples_per_s=gen, reader_examples_per_s=read, reader_vs_training=read / train)
    print(f"generator (planted, {args.examples:,} examples)            {gen:10.1f} examples/s (goal >= 20,000)")
    print(f"reader (shuffled, batch {args.batch_size})                    {read:10.1f} examples/s "
          f"= {read / train:.0f}x training consumption (goal >= 10x)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
