"""Does RL on the ground truth fix a biased cold start? The demo's recipe over several seeds.

For each seed: a simulated teacher 2 s too wide each side -> cold start -> SFT -> RL set -> GRPO on
the truth; prints held-out greedy mIoU of the teacher's labels, SFT and SFT + GRPO, and the gains of
SFT + GRPO over SFT and over the teacher's labels, each with its paired 95% interval over the 100
held-out videos. The summary gives the mean gain over seeds two ways: the 95% interval of the mean
over seeds (Student's t: how much another seed may move it) and the paired interval of the mean
over these seeds' held-out videos (videos resampled within each seed: is the gain real on them),
with the spread (standard deviation over seeds). ``--out FILE`` appends one JSON line per seed
(the figures, every held-out video's IoU per predictor, the torch threads and package versions) and
``--summarize FILE...`` prints the summary of runs already made, thread counts pooled and apart.

    python benchmarks/rl_fixes_biased_coldstart.py [--seeds 0 1 2] [--rl-steps 100] [--rl-temperature 0.7]
        [--rl-lr 3e-4] [--max-span 0.9] [--keep DIR] [--threads 2] [--out runs.jsonl]
    python benchmarks/rl_fixes_biased_coldstart.py --summarize runs-1.jsonl runs-2.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from vtg_data.findings import mean_over_seeds
from vtg_data.grounding.metrics import paired_gain_over_runs
from vtg_data.recipe import RecipeConfig, machine, run_recipe, versions


def summarize(runs: list[dict], label: str) -> None:
    """Mean gains over the runs: a t interval over seeds (runs of one seed at several thread counts
    averaged first: they share the seed's data, SFT and held-out videos, so they are not independent
    draws) and the paired interval over the runs' held-out videos."""
    for name, base in (("over SFT", "SFT on teacher"), ("over teacher labels", "teacher labels")):
        by_seed: dict[int, list[float]] = {}
        for run in runs:
            by_seed.setdefault(run["seed"], []).append(run["gains"][name]["gain"])
        values = [statistics.fmean(gains) for gains in by_seed.values()]
        mean, spread, (t_lo, t_hi) = mean_over_seeds(values)
        pooled = paired_gain_over_runs([(run["ious"]["SFT + GRPO"], run["ious"][base]) for run in runs])
        smallest = min(run["gains"][name]["gain"] for run in runs)
        print(f"{label}: gain {name}, {len(runs)} runs over {len(values)} seeds: mean {mean:+.3f}, t over seeds "
              f"[{t_lo:+.3f}, {t_hi:+.3f}], paired over their videos [{pooled['lo']:+.3f}, "
              f"{pooled['hi']:+.3f}]; sd over seeds {spread:.3f}, smallest run {smallest:+.3f}")  # fmt: skip


def summarize_files(paths: list[Path]) -> None:
    runs = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    for threads in sorted({run["threads"] for run in runs}):
        summarize([run for run in runs if run["threads"] == threads], f"threads {threads}")
    if len({run["threads"] for run in runs}) > 1:
        summarize(runs, "all threads")
        by_seed: dict[int, dict[int, float]] = {}
        for run in runs:
            by_seed.setdefault(run["seed"], {})[run["threads"]] = run["held_out_mIoU"]["SFT + GRPO"]
        moves = [max(v.values()) - min(v.values()) for v in by_seed.values() if len(v) > 1]
        if moves:
            print(f"same seed, other thread count: SFT + GRPO moves by {statistics.fmean(moves):.3f} on average, "
                  f"{max(moves):.3f} at most ({len(moves)} seeds)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-videos", type=int, default=RecipeConfig.n_videos)
    parser.add_argument("--sft-steps", type=int, default=RecipeConfig.sft_steps)
    parser.add_argument("--rl-steps", type=int, default=RecipeConfig.rl_steps)
    parser.add_argument("--k", type=int, default=RecipeConfig.k)
    parser.add_argument("--rl-temperature", type=float, default=RecipeConfig.rl_temperature)
    parser.add_argument("--rl-lr", type=float, default=RecipeConfig.rl_lr)
    parser.add_argument("--max-span", type=float, default=RecipeConfig.coldstart_max_span)
    parser.add_argument("--keep", type=Path, help="keep each seed's runs under DIR/seed-N")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (float summation order)")
    parser.add_argument("--out", type=Path, help="append one JSON line per seed to this file")
    parser.add_argument("--summarize", type=Path, nargs="+", help="summarize --out files instead of running")
    args = parser.parse_args()
    if args.summarize:
        summarize_files(args.summarize)
        return
    torch.set_num_threads(args.threads)
    runs = []
    for seed in args.seeds:
        start = time.perf_counter()
        place = nullcontext(str(args.keep / f"seed-{seed}")) if args.keep else tempfile.TemporaryDirectory()
        with place as root:
            result = run_recipe(
                RecipeConfig(root=Path(root), seed=seed, n_videos=args.n_videos, sft_steps=args.sft_steps,
                             rl_steps=args.rl_steps, k=args.k, rl_temperature=args.rl_temperature, rl_lr=args.rl_lr,
                             coldstart_max_span=args.max_span),
                say=lambda *_: None,
            )  # fmt: skip
        seconds = time.perf_counter() - start
        m = result["held_out_mIoU"]
        line = [f"seed {seed}: teacher labels {m['teacher labels']:.3f}, SFT {m['SFT on teacher']:.3f}, "
                f"SFT + GRPO {m['SFT + GRPO']:.3f}"]  # fmt: skip
        for name, gain in result["gains"].items():
            line.append(f"{name} {gain['gain']:+.3f} [{gain['lo']:+.3f}, {gain['hi']:+.3f}]")
        line.append(
            f"reward {result['rl_reward_first10']:.3f} -> {result['rl_reward_last10']:.3f}; {seconds:.0f} s"
        )
        print("; ".join(line), flush=True)
        run = {"seed": seed, "threads": args.threads, "held_out_mIoU": m, "gains": result["gains"],
               "ious": result["held_out_ious"], "rl_reward_first10": result["rl_reward_first10"],
               "rl_reward_last10": result["rl_reward_last10"], "seconds": round(seconds, 1),
               "machine": machine(),
               "config": {"n_videos": args.n_videos, "sft_steps": args.sft_steps, "rl_steps": args.rl_steps,
                          "k": args.k, "rl_temperature": args.rl_temperature, "rl_lr": args.rl_lr,
                          "max_span": args.max_span}, "versions": versions()}  # fmt: skip
        runs.append(run)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps(run) + "\n")
    summarize(runs, f"threads {args.threads}")


if __name__ == "__main__":
    main()
