"""The TVG-R1 paper's data findings, reproduced in miniature: difficulty control and cold-start
curation, each a paired comparison of recipe arms over seeds (``vtg_data/findings.py`` says what
each arm is).

    python benchmarks/paper_findings.py --seeds 0 1 2 3 4 --threads 2 --out benchmarks/runs/findings-threads-2.jsonl
    python benchmarks/paper_findings.py --summarize benchmarks/runs/findings-threads-2.jsonl

One JSON line per seed: every arm's held-out mIoU and every held-out video's IoU per arm, the RL
sets' sizes, the cold-start funnel, the machine and versions. ``--summarize`` prints, per finding,
the two arms, the mean paired gain, its paired 95% interval over the runs' held-out videos (videos
resampled within each seed), the 95% t interval of the mean over seeds, and a verdict:
reproduced (both intervals above 0), reversed (both below), else not reproduced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path


def summarize(paths: list[Path]) -> None:
    from vtg_data.findings import read_runs, summary_rows

    runs = read_runs(paths)
    arms = sorted({arm for run in runs for arm in run["held_out_mIoU"]})
    print(
        f"{len(runs)} runs, seeds {sorted({r['seed'] for r in runs})}, threads {sorted({r['threads'] for r in runs})}"
    )
    print("| arm | " + " | ".join(f"seed {r['seed']}" for r in runs) + " | mean |")
    print("|---|" + "---|" * (len(runs) + 1))
    for arm in arms:
        values = [r["held_out_mIoU"].get(arm) for r in runs]
        shown = [f"{v:.3f}" if v is not None else "" for v in values]
        known = [v for v in values if v is not None]
        print(f"| {arm} | " + " | ".join(shown) + f" | {statistics.fmean(known):.3f} |")
    print()
    print(
        "| finding | arms | mean gain | paired 95% over videos | t 95% over seeds | sd over seeds | verdict |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in summary_rows(runs):
        lo, hi = row["paired"]
        slo, shi = row["over_seeds"]
        print(f"| {row['finding']} | {row['arms']} | {row['mean_gain']:+.3f} | [{lo:+.3f}, {hi:+.3f}] | "
              f"[{slo:+.3f}, {shi:+.3f}] | {row['sd_over_seeds']:.3f} | {row['verdict']} |")  # fmt: skip


def main() -> None:
    from vtg_data.recipe import RecipeConfig

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (float summation order)")
    parser.add_argument(
        "--with-e", action="store_true", help="also arm E (gaussian-difficulty set of B's size)"
    )
    parser.add_argument("--n-videos", type=int, default=RecipeConfig.n_videos)
    parser.add_argument("--sft-steps", type=int, default=RecipeConfig.sft_steps)
    parser.add_argument("--rl-steps", type=int, default=RecipeConfig.rl_steps)
    parser.add_argument("--keep", type=Path, help="keep each seed's runs under DIR/seed-N")
    parser.add_argument("--out", type=Path, help="append one JSON line per seed")
    parser.add_argument("--summarize", type=Path, nargs="+", help="summarize --out files instead of running")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return

    import torch

    from vtg_data.findings import FindingsConfig, run_findings
    from vtg_data.recipe import machine, versions

    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        start = time.perf_counter()
        place = nullcontext(str(args.keep / f"seed-{seed}")) if args.keep else tempfile.TemporaryDirectory()
        with place as root:
            recipe = RecipeConfig(root=Path(root), seed=seed, n_videos=args.n_videos, sft_steps=args.sft_steps,
                                  rl_steps=args.rl_steps)  # fmt: skip
            result = run_findings(FindingsConfig(recipe, with_e=args.with_e), say=lambda *_: None)
        seconds = time.perf_counter() - start
        m = result["held_out_mIoU"]
        print(f"seed {seed}: " + ", ".join(f"{arm} {value:.3f}" for arm, value in sorted(m.items()))
              + f"; {seconds:.0f} s", flush=True)  # fmt: skip
        run = {"seed": seed, "threads": args.threads, "held_out_mIoU": m, "ious": result["held_out_ious"],
               "gains": result["gains"], "rl_sets": result["rl_sets"], "coldstart": result["coldstart"],
               "rl_rewards": result["rl_rewards"], "seconds": round(seconds, 1), "machine": machine(),
               "config": {"n_videos": args.n_videos, "sft_steps": args.sft_steps, "rl_steps": args.rl_steps,
                          "k": recipe.k, "rl_temperature": recipe.rl_temperature, "rl_lr": recipe.rl_lr,
                          "with_e": args.with_e}, "versions": versions()}  # fmt: skip
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(run) + "\n")


if __name__ == "__main__":
    main()
