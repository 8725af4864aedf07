"""``vtg-data build rl``: select a difficulty-controlled RL set from a scores table. No model runs.

The policies are described in ``rl_select``; this module holds the options, reads the scores (and
the benchmark tables a span-stratified target is measured on) and writes the set, its manifest,
a before/after histogram plot and, when asked, the partially annotated samples found.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vtg_data import __version__
from vtg_data.files import atomic_path, write_text
from vtg_data.schema import write_table_atomic
from vtg_data.stages.common import jsonable, shard_of, write_json_atomic
from vtg_data.stages.difficulty import SCORE_SCHEMA, histogram
from vtg_data.stages.rl_config import RLConfig
from vtg_data.stages.rl_select import select
from vtg_data.stages.span_strata import SpanGrid, target_from_tables

# what selection reads of a scores table: never the rollout texts, so memory follows the row count only
SELECTION_COLUMNS = ["uid", "source", "query", "duration", "windows", "status", "rollout_windows", "rewards",
                     "mean_iou", "difficulty"]  # fmt: skip


def build_rl(cfg: RLConfig) -> dict[str, Any]:
    if "span-stratified" in cfg.policies and not cfg.span_target:
        raise ValueError("span-stratified needs a target: --span-target BENCHMARK.parquet (repeatable)")
    grid = SpanGrid(cfg.span_length_edges, cfg.span_coverage_edges)
    span_target = target_from_tables(cfg.span_target, grid) if "span-stratified" in cfg.policies else None
    files = score_files(cfg.scores)
    scored = [r for f in files for r in pq.read_table(f, columns=SELECTION_COLUMNS).to_pylist()]
    ok = [r for r in scored if r["status"] == "ok"]
    selection = select(ok, cfg, span_target)
    chosen, removed = selection.rows, selection.removed
    write_selected(files, {r["uid"] for r in chosen}, cfg.out / "data", cfg.shards)
    before = histogram([r["mean_iou"] for r in ok])
    after = histogram([r["mean_iou"] for r in chosen])
    plot = cfg.out / "difficulty_histogram.png"
    plot_histograms(before, after, plot)
    manifest = {
        "stage": "build rl",
        "toolkit_version": __version__,
        "config": jsonable(asdict(cfg)),
        "scores_run": (read_json(cfg.scores / "manifest.json") or {}).get("run_id"),
        "counts": {
            "scored": len(ok),
            "failed_in_scores": len(scored) - len(ok),
            "selected": len(chosen),
            "removed": removed,
            "by_source": dict(Counter(r["source"] for r in chosen)),
        },  # fmt: skip
        "mean_iou_histogram": {"bins": 20, "before": before, "after": after},
        "plot": plot.name,
        "policy_reports": selection.reports,
    }
    if "partial-annotation" in cfg.policies:
        lines = "".join(json.dumps(item, sort_keys=True) + "\n" for item in selection.partial)
        write_text(cfg.out / "partial_annotations.jsonl", lines)
        manifest["partial_annotations"] = "partial_annotations.jsonl"
    write_json_atomic(cfg.out / "manifest.json", manifest)
    return manifest


def score_files(folder: Path) -> list[Path]:
    files = sorted((Path(folder) / "scores").glob("shard-*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: no scores/shard-*.parquet (not a score-difficulty run folder)")
    return files


def write_selected(files: list[Path], uids: set[str], folder: Path, shards: int) -> None:
    """The selected rows, whole (rollouts included), into ``shards`` files sorted by uid; one scores
    shard is read at a time."""
    import pyarrow.compute as pc

    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("train-*.parquet"):
        stale.unlink()
    wanted = pa.array(sorted(uids), type=pa.string())
    parts: dict[int, list[pa.Table]] = defaultdict(list)
    for path in files:
        table = pq.read_table(path).cast(SCORE_SCHEMA)
        table = table.filter(pc.is_in(table["uid"], value_set=wanted))
        if not table.num_rows:
            continue
        shard_ids = pa.array([shard_of(uid, shards) for uid in table["uid"].to_pylist()])
        for k in range(shards):
            piece = table.filter(pc.equal(shard_ids, k))
            if piece.num_rows:
                parts[k].append(piece)
    for k in range(shards):
        table = pa.concat_tables(parts[k]) if parts[k] else SCORE_SCHEMA.empty_table()
        write_table_atomic(table.sort_by("uid"), folder / f"train-{k:05d}-of-{shards:05d}.parquet")


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return None


def plot_histograms(before: list[int], after: list[int], path: Path) -> None:
    """Before/after mean-IoU histograms as a PNG for the dataset card."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = [(i + 0.5) / len(before) for i in range(len(before))]
    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    axis.bar(
        centres, before, width=1 / len(before), alpha=0.45, label=f"scored ({sum(before)})", edgecolor="none"
    )
    axis.bar(
        centres, after, width=1 / len(before), alpha=0.85, label=f"selected ({sum(after)})", edgecolor="none"
    )
    axis.set_xlabel("mean IoU over rollouts")
    axis.set_ylabel("samples")
    axis.set_xlim(0, 1)
    axis.legend()
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, metadata={"Software": None})
    plt.close(figure)
