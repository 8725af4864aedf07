"""The TVG-R1 paper's two data findings, as arms of the recipe fixed before measuring.

The paper claims that curated cold-start data matters (TVG-R1 against TVG-R1-U) and that
difficulty-controlled RL data matters ("RL data filtering leads to substantial performance
improvements"). On one seed of the recipe (the same corpus, simulated teacher, held-out videos,
GRPO budget, k, temperature and learning rate in every arm):

- A: SFT on the filtered cold start, no RL (the paper's TVG-ColdStart);
- B: A + GRPO on the difficulty-controlled RL set (the recipe as it stands: groups with reward
  variance under A);
- C: A + GRPO on an RL set of B's size drawn at random from the same scored pool (no difficulty);
- D: SFT on the unfiltered teacher traces (every trace that reads as an answer: the encoding,
  format and parse rules only; the quality rules off) + the GRPO of B (B's RL set, settings, steps);
- E (``with_e``): A + GRPO on a set of B's size drawn by the ``gaussian`` difficulty policy.

The comparisons are B vs A (RL after SFT), B vs the simulated teacher's own held-out labels (the
recipe's claim that RL repairs a biased teacher), B vs C (difficulty control) and B vs D (cold-start
curation). "RL without a cold start" is not an arm: a random-weight model has no zero-shot
grounding to start RL from. Nothing here is tuned on the arms' results.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtg_data.grounding.metrics import paired_gain
from vtg_data.recipe import (
    RecipeConfig,
    coldstart_set,
    corpus_and_teacher,
    difficulty_under,
    grpo_on,
    held_out_ious,
    rl_set,
    sft_on,
)

ARMS = {
    "A": "SFT on the filtered cold start",
    "B": "A + GRPO on the difficulty-controlled set",
    "C": "A + GRPO on a random set of B's size",
    "D": "SFT on the unfiltered traces + B's GRPO",
    "E": "A + GRPO on a gaussian-difficulty set of B's size",
    "teacher labels": "the simulated teacher's own windows for the held-out videos",
}
FINDINGS = (
    ("RL after SFT", "B", "A"),
    ("RL past the teacher's labels", "B", "teacher labels"),
    ("difficulty control", "B", "C"),
    ("cold-start curation", "B", "D"),
    ("difficulty policy (nonzero-variance vs gaussian)", "B", "E"),
)


@dataclass(frozen=True)
class FindingsConfig:
    recipe: RecipeConfig
    with_e: bool = False


def run_findings(cfg: FindingsConfig, say=print, progress=None) -> dict[str, Any]:
    """Every arm of one seed; returns each arm's held-out mIoU and per-video IoUs (table order)."""
    import torch

    from vtg_data.hub.layout import HubBuildConfig, build_hub_folder
    from vtg_data.lvlm.tiny import make_tiny_model

    recipe = cfg.recipe
    torch.manual_seed(recipe.seed)
    root = Path(recipe.root)
    say("arms 1/7: corpus and the simulated teacher")
    data = corpus_and_teacher(recipe)
    say("arms 2/7: cold starts, filtered and unfiltered")
    filtered = coldstart_set(recipe, root / "coldstart")
    unfiltered = coldstart_set(recipe, root / "coldstart-unfiltered", filtered=False)
    init = make_tiny_model(root / "models" / "init", size="s", seed=recipe.seed)
    say("arms 3/7: SFT on each cold start (A, and D's start)")
    sft_a = sft_on(recipe, init, root / "coldstart", root / "sft-A", progress)
    sft_d = sft_on(recipe, init, root / "coldstart-unfiltered", root / "sft-D", progress)
    say("arms 4/7: difficulty under A; the RL sets")
    difficulty_under(recipe, sft_a["final_checkpoint"], root / "difficulty")
    sets = {"B": rl_set(recipe, root / "difficulty", root / "rl-B", say=say)}
    size = sets["B"]["counts"]["selected"]
    sets["C"] = rl_set(recipe, root / "difficulty", root / "rl-C", policies=("random",), size=size)
    if cfg.with_e:
        sets["E"] = rl_set(recipe, root / "difficulty", root / "rl-E", policies=("gaussian",), size=size)
    for arm in sets:
        build_hub_folder(HubBuildConfig("tvg-rl", (root / f"rl-{arm}",), root / "hub" / f"rl-{arm}",
                                        repo=f"findings/rl-{arm}", version="0.1.0"))  # fmt: skip
    say(f"arms 5/7: GRPO (B, C{', E' if cfg.with_e else ''}) from A, {recipe.rl_steps} steps each")
    final = {"A": sft_a["final_checkpoint"]}
    rewards = {}
    for arm in sets:
        run = grpo_on(
            recipe, sft_a["final_checkpoint"], root / "hub" / f"rl-{arm}", root / f"grpo-{arm}", progress
        )
        final[arm], rewards[arm] = run["final_checkpoint"], _rewards(run)
    say("arms 6/7: D: B's GRPO from the unfiltered SFT")
    run = grpo_on(recipe, sft_d["final_checkpoint"], root / "hub" / "rl-B", root / "grpo-D", progress)
    final["D"], rewards["D"] = run["final_checkpoint"], _rewards(run)
    say("arms 7/7: held-out evaluation of every arm")
    ious, miou = {}, {}
    for arm in sorted(final):
        scored = held_out_ious(recipe, final[arm])
        ious[arm], miou[arm] = scored["ious"], scored["mIoU"]
    test_teacher = data["test_teacher"]
    uids = [row["uid"] for row in data["test_rows"]]
    ious["teacher labels"] = [test_teacher[uid] for uid in uids if uid in test_teacher]
    miou["teacher labels"] = statistics.fmean(ious["teacher labels"])
    gains = {
        name: paired_gain(ious[arm], ious[base], seed=recipe.seed)
        for name, arm, base in FINDINGS
        if arm in ious and base in ious
    }
    return {
        "held_out_mIoU": miou,
        "held_out_ious": ious,
        "gains": gains,
        "rl_sets": {arm: s["counts"]["selected"] for arm, s in sets.items()} | {"D": size},
        "rl_pool": sets["B"]["counts"]["scored"],
        "coldstart": {
            "filtered": filtered.funnel["overall"]["out"],
            "unfiltered": unfiltered.funnel["overall"]["out"],
            "traces": filtered.funnel["overall"]["in"],
        },  # fmt: skip
        "rl_rewards": rewards,
    }


def _rewards(run: dict) -> dict[str, float]:
    history = run["history"]
    return {"first10": statistics.fmean(h["reward"] for h in history[:10]),
            "last10": statistics.fmean(h["reward"] for h in history[-10:])}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Summaries of runs already made (benchmarks/paper_findings.py --summarize, vtg-data report)


def read_runs(paths) -> list[dict]:
    """The JSON lines of ``paper_findings.py --out`` files, one per run."""
    import json

    return [
        json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.strip()
    ]


def is_findings_file(path: Path) -> bool:
    import json

    if not (path.is_file() and path.suffix == ".jsonl"):
        return False
    first = next((line for line in path.read_text().splitlines() if line.strip()), "")
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and {"seed", "ious", "held_out_mIoU", "rl_sets"} <= set(record)


T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_over_seeds(values: list[float]) -> tuple[float, float, tuple[float, float]]:
    """Mean of per-seed values, their sd and the 95% t interval of the mean (Student's t, n - 1
    degrees of freedom); nan for the spread and interval with one seed."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan"), (float("nan"), float("nan"))
    spread = statistics.stdev(values)
    half = T_975.get(len(values) - 1, 1.96) * spread / len(values) ** 0.5
    return mean, spread, (mean - half, mean + half)


def verdict(paired: tuple[float, float], over_seeds: tuple[float, float]) -> str:
    if paired[0] > 0 and over_seeds[0] > 0:
        return "reproduced"
    if paired[1] < 0 and over_seeds[1] < 0:
        return "reversed"
    return "not reproduced"


def summary_rows(runs: list[dict]) -> list[dict]:
    """Per finding: mean paired gain, paired interval over videos within seeds, t interval over seeds."""
    from vtg_data.grounding.metrics import paired_gain_over_runs

    rows = []
    for name, arm, base in FINDINGS:
        usable = [run for run in runs if arm in run["ious"] and base in run["ious"]]
        if not usable:
            continue
        by_seed: dict[int, list[float]] = {}
        for run in usable:
            gain = statistics.fmean(run["ious"][arm]) - statistics.fmean(run["ious"][base])
            by_seed.setdefault(run["seed"], []).append(gain)
        values = [statistics.fmean(v) for v in by_seed.values()]
        mean, spread, over_seeds = mean_over_seeds(values)
        pooled = paired_gain_over_runs([(run["ious"][arm], run["ious"][base]) for run in usable])
        rows.append({"finding": name, "arms": f"{arm} vs {base}", "runs": len(usable), "seeds": len(values),
                     "mean_gain": mean, "paired": (pooled["lo"], pooled["hi"]), "over_seeds": over_seeds,
                     "sd_over_seeds": spread, "per_seed": values,
                     "verdict": verdict((pooled["lo"], pooled["hi"]), over_seeds) if len(values) > 1 else "one seed"})  # fmt: skip
    return rows
