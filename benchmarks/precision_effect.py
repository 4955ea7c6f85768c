"""What bf16 changes in the study: two finished study workdirs, one per precision, compared.

Run the study twice back to back on one machine, once per precision, then compare:

    .venv/bin/studylib study --workdir /tmp/fp32 -p precision fp32
    .venv/bin/studylib study --workdir /tmp/bf16 -p precision bf16   # or auto on a bf16 CPU
    .venv/bin/python benchmarks/precision_effect.py --fp32 /tmp/fp32 --bf16 /tmp/bf16 [--json out.json]

Prints, from the runs' own records:
- wall time per notebook and in total (the pipeline's `state.json`) and the bf16 / fp32 ratio;
  with `--benchmark` (the JSON of `benchmarks/heavy_ranker.py` on the same machine), how low that
  ratio could go if every second of the chapters that run the ranker sped up by the training
  step's bf16 speed-up, or by the bf16/fp32 GEMM-rate ratio, and the other chapters not at all;
- per evaluable head, the AUROC gap to the oracle averaged over the seeds (`02_seeds.csv`) in
  each precision, their difference, and the seed-to-seed range of the AUROC in each precision
  (the goal: the difference stays inside that range);
- whether each head's bf16 AUROC lies inside the fp32 run's user-level 95 % interval
  (`02_metrics.csv`), and vice versa;
- the findings (`findings.json`) whose verdict differs between the two precisions, and for every
  number a finding states with a 95 % interval, whether each precision's estimate lies inside the
  other's interval;
- the disk each workdir's data/, runs/ and _build/ take.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from studylib.stats import MIN_POSITIVES

# The chapters that run the Heavy Ranker (training, its evaluation, scoring): the only ones bf16 can speed up.
RANKER_NOTEBOOKS = ("02_train.ipynb", "02b_twhin_ablation.ipynb", "03_score.ipynb")


def notebook_seconds(workdir: Path, profile: str) -> dict[str, float]:
    state = json.loads((workdir / "_build" / "executed" / profile / "state.json").read_text())
    return {name: entry["seconds"] for name, entry in state.items() if entry.get("status") == "ok"}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def head_gaps(workdir: Path, profile: str) -> pd.DataFrame:
    seeds = pd.read_csv(workdir / "_build" / "results" / profile / "02_seeds.csv")
    seeds = seeds[seeds["positives"] >= MIN_POSITIVES]
    seeds = seeds.assign(gap=seeds["oracle_auroc"] - seeds["auroc"])
    return seeds.groupby("head").agg(gap=("gap", "mean"), auroc_min=("auroc", "min"), auroc_max=("auroc", "max"),
                                     seeds=("seed", "nunique"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", required=True, type=Path, help="workdir of the study run with precision fp32")
    parser.add_argument("--bf16", required=True, type=Path, help="workdir of the study run in bf16")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--benchmark", type=Path,
                        help="`benchmarks/heavy_ranker.py --json` output of the same machine: bounds the time ratio")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()

    times = {p: notebook_seconds(getattr(args, p), args.profile) for p in ("fp32", "bf16")}
    print(f"{'notebook':28s} {'fp32 s':>8s} {'bf16 s':>8s} {'ratio':>6s}")
    for name in times["fp32"]:
        a, b = times["fp32"][name], times["bf16"].get(name, float("nan"))
        print(f"{name:28s} {a:8.1f} {b:8.1f} {b / a:6.2f}")
    total = {p: sum(t.values()) for p, t in times.items()}
    ratio = total["bf16"] / total["fp32"]
    print(f"{'all notebooks':28s} {total['fp32']:8.1f} {total['bf16']:8.1f} {ratio:6.2f}  (goal <= 0.5)")
    ranker = {p: sum(v for k, v in t.items() if k in RANKER_NOTEBOOKS) for p, t in times.items()}
    rest = {p: total[p] - ranker[p] for p in total}
    print(f"  chapters running the ranker ({', '.join(RANKER_NOTEBOOKS)}): {ranker['fp32']:.0f} -> {ranker['bf16']:.0f} s "
          f"({ranker['bf16'] / ranker['fp32']:.2f}); the others {rest['fp32']:.0f} -> {rest['bf16']:.0f} s")
    # The speed-up the ranker chapters would need for the whole study to take half its fp32 time.
    budget = 0.5 * total["fp32"] - rest["bf16"]
    needed = ranker["fp32"] / budget if budget > 0 else float("inf")
    print(f"  half the fp32 time needs the ranker chapters {needed:.2f}x faster in bf16 "
          f"(they are {ranker['fp32'] / ranker['bf16']:.2f}x)")
    bounds = {}
    if args.benchmark:
        # How low the ratio could go if every second of the ranker chapters sped up as much as a
        # training step does (or as the bf16 GEMM rate over the fp32 one), the other chapters unchanged.
        bench = json.loads(args.benchmark.read_text())
        for name, speedup in (("training-step speed-up", bench["speedup_bf16_over_fp32"]),
                              ("bf16/fp32 GEMM-rate ratio", bench["gemm_bf16_flops"] / bench["gemm_fp32_flops"])):
            bounds[name] = {"speedup": speedup, "ratio": (rest["bf16"] + ranker["fp32"] / speedup) / total["fp32"]}
            print(f"  lowest ratio if all ranker-chapter time sped up by the {name} ({speedup:.2f}x): "
                  f"{bounds[name]['ratio']:.2f}")

    gaps = head_gaps(args.fp32, args.profile).add_suffix("_fp32").join(head_gaps(args.bf16, args.profile).add_suffix("_bf16"))
    gaps["difference"] = gaps["gap_bf16"] - gaps["gap_fp32"]
    gaps["seed_range_fp32"] = gaps["auroc_max_fp32"] - gaps["auroc_min_fp32"]
    gaps["seed_range_bf16"] = gaps["auroc_max_bf16"] - gaps["auroc_min_bf16"]
    metrics = {p: pd.read_csv(getattr(args, p) / "_build" / "results" / args.profile / "02_metrics.csv").set_index("head")
               for p in ("fp32", "bf16")}
    inside = lambda a, b: (metrics[a]["auroc"] >= metrics[b]["auroc_low"]) & (metrics[a]["auroc"] <= metrics[b]["auroc_high"])  # noqa: E731
    gaps["bf16_in_fp32_interval"] = inside("bf16", "fp32").reindex(gaps.index)
    gaps["fp32_in_bf16_interval"] = inside("fp32", "bf16").reindex(gaps.index)
    print()
    print("| head | AUROC gap to oracle, fp32 | bf16 | bf16 − fp32 | seed range fp32 | seed range bf16 | "
          "bf16 in fp32 95 % CI |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for head, r in gaps.iterrows():
        print(f"| {head} | {r['gap_fp32']:.4f} | {r['gap_bf16']:.4f} | {r['difference']:+.4f} | "
              f"{r['seed_range_fp32']:.4f} | {r['seed_range_bf16']:.4f} | {'yes' if r['bf16_in_fp32_interval'] else 'no'} |")
    spread = max(gaps["seed_range_fp32"].median(), gaps["seed_range_bf16"].median())
    within = (gaps["difference"].abs() <= gaps[["seed_range_fp32", "seed_range_bf16"]].max(axis=1)).all()
    print(f"\nmedian |difference| {gaps['difference'].abs().median():.4f}, largest {gaps['difference'].abs().max():.4f} "
          f"({gaps['difference'].abs().idxmax()}); median seed range {spread:.4f}; every difference inside its head's "
          f"seed range: {'yes' if within else 'no'}")
    verdicts = {p: {f["id"]: f["verdict"] for f in json.loads(
        (getattr(args, p) / "_build" / "results" / args.profile / "findings.json").read_text())} for p in ("fp32", "bf16")}
    changed = {k: (v, verdicts["bf16"].get(k)) for k, v in verdicts["fp32"].items() if verdicts["bf16"].get(k) != v}
    print(f"findings with the same verdict in both precisions: {len(verdicts['fp32']) - len(changed)} of "
          f"{len(verdicts['fp32'])}" + "".join(f"\n  {k}: fp32 {a!r}, bf16 {b!r}" for k, (a, b) in changed.items()))
    # Every number a finding states with a 95 % interval: is the other precision's estimate inside it?
    numbers = {p: {f["id"]: f["numbers"] for f in json.loads(
        (getattr(args, p) / "_build" / "results" / args.profile / "findings.json").read_text())} for p in ("fp32", "bf16")}
    outside = []
    checked = 0
    for fid, fp32_numbers in numbers["fp32"].items():
        bf16_numbers = numbers["bf16"].get(fid, {})
        for key, value in fp32_numbers.items():
            low, high = f"{key}_low", f"{key}_high"
            if low not in fp32_numbers or not {key, low, high} <= set(bf16_numbers):
                continue
            checked += 1
            for mine, other in (("fp32", "bf16"), ("bf16", "fp32")):
                estimate = numbers[other][fid][key]
                if not numbers[mine][fid][low] <= estimate <= numbers[mine][fid][high]:
                    outside.append(f"{fid}.{key}: {other} {estimate:.4g} outside the {mine} interval")
    print(f"numbers stated with a 95 % interval: {checked}; each precision's estimate inside the other's interval: "
          f"{checked - len({o.split(':')[0] for o in outside})} of {checked}" + "".join(f"\n  {o}" for o in outside))
    disk = {p: {part: folder_bytes(getattr(args, p) / part) for part in ("data", "runs", "_build")} for p in ("fp32", "bf16")}
    for p, parts in disk.items():
        print(f"disk {p}: " + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in parts.items())
              + f"; total {sum(parts.values()) / 1e9:.2f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "seconds": times, "total_seconds": total, "time_ratio_bf16_over_fp32": ratio,
            "ranker_chapter_seconds": ranker, "ranker_speedup_needed_for_half": needed, "time_ratio_bounds": bounds,
            "heads": gaps.reset_index().to_dict(orient="records"), "every_difference_within_seed_range": bool(within),
            "findings_with_changed_verdict": {k: list(v) for k, v in changed.items()},
            "interval_numbers_checked": checked, "interval_numbers_outside": outside,
            "disk_bytes": disk}, indent=1, default=float))


if __name__ == "__main__":
    main()
