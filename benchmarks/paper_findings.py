"""The TVG-R1 paper's data findings, reproduced in miniature: difficulty control and cold-start
curation, each a paired comparison of recipe arms over seeds (``vtg_data/findings.py`` says what
each arm is).

    python benchmarks/paper_findings.py --seeds 0 1 2 3 4 --threads 2 --out benchmarks/runs/findings-threads-2.jsonl
    python benchmarks/paper_findings.py --summarize benchmarks/runs/findings-threads-2.jsonl
    # real scale: the arms run with the CLI (README, "The paper's findings"), then one line per seed
    python benchmarks/paper_findings.py --from-evals A=runs/eval-A B=runs/eval-B C=runs/eval-C D=runs/eval-D \
        --seed 0 --out findings-7b.jsonl

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
    print()
    print("| arm | " + " | ".join(f"seed {r['seed']}" for r in runs) + " | mean |")
    print("|---|" + "---|" * (len(runs) + 1))
    for arm in arms:
        values = [r["held_out_mIoU"].get(arm) for r in runs]
        shown = [f"{v:.3f}" if v is not None else "" for v in values]
        known = [v for v in values if v is not None]
        print(f"| {arm} | " + " | ".join(shown) + f" | {statistics.fmean(known):.3f} |")
    print()
    for (
        run
    ) in runs:  # what each arm trained on: how selective the difficulty set was decides what B vs C can show
        # lines without rl_pool: the training pool is every train row, each one a teacher trace
        pool, what = (
            (run["rl_pool"], "scored")
            if "rl_pool" in run
            else (run.get("coldstart", {}).get("traces"), "in the pool")
        )
        sets = run["rl_sets"]
        if not sets:  # a line made --from-evals: the arms were trained elsewhere
            continue
        share = f" of {pool} {what} ({sets['B'] / pool:.0%})" if pool else ""
        cold = run.get("coldstart")
        cold_text = (
            f"; cold start {cold['filtered']} filtered, {cold['unfiltered']} unfiltered of {cold['traces']} traces"
            if cold
            else ""
        )
        print(f"seed {run['seed']} ({run['threads']} threads): RL sets of {sets['B']} rows{share}{cold_text}")
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


def line_from_evals(arms: dict[str, str], seed: int, threads: int) -> dict:
    """One findings line from each arm's eval run (same benchmark table and order in every arm):
    each query's IoU as ``vtg-data eval`` scored it (its best window against the ground truth)."""
    from vtg_data.grounding.metrics import best_match
    from vtg_data.recipe import machine, versions
    from vtg_data.tables import load_rows

    ious, miou, order = {}, {}, None
    for arm, folder in arms.items():
        folder = Path(folder)
        card = json.loads((folder / "metrics.json").read_text())["card"]
        rows = {
            row["uid"]: row for row in load_rows(tuple(Path(d["file"]) for d in card["data"]), None, None)
        }
        records = [
            json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines() if x.strip()
        ]
        scored = {r["uid"]: (best_match(r["windows"][0], rows[r["uid"]]["windows"])[0] if r.get("windows") else 0.0)
                  for r in records if r["status"] == "ok"}  # fmt: skip
        order = order or sorted(scored)
        if sorted(scored) != order:
            raise ValueError(
                f"{folder}: answered other queries than the first arm (all arms: the same benchmark, every query)"
            )
        ious[arm] = [scored[uid] for uid in order]
        miou[arm] = statistics.fmean(ious[arm])
    return {"seed": seed, "threads": threads, "held_out_mIoU": miou, "ious": ious, "rl_sets": {}, "gains": {},
            "coldstart": {}, "rl_rewards": {}, "machine": machine(), "versions": versions(),
            "config": {"from_evals": arms}}  # fmt: skip


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
    parser.add_argument(
        "--from-evals",
        nargs="+",
        metavar="ARM=DIR",
        help="make the seed's line from `vtg-data eval --model` run folders of each arm (real scale)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="with --from-evals: the seed the arms were trained with"
    )
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    if args.from_evals:
        run = line_from_evals(dict(item.split("=", 1) for item in args.from_evals), args.seed, args.threads)
        print(", ".join(f"{arm} {value:.3f}" for arm, value in sorted(run["held_out_mIoU"].items())))
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps(run) + "\n")
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
