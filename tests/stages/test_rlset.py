"""`build rl` policies on made-up score tables: proportions, determinism, edge cases."""

import json
import random

import pyarrow as pa
import pytest

from vtg_data.stages.difficulty import SCORE_SCHEMA
from vtg_data.stages.rlset import RLConfig, build_rl, select


def row(i, mean, *, source="a", duration=30.0, rewards=None):
    rewards = rewards if rewards is not None else [mean, mean + 0.1]
    return {"uid": f"{source}/test/{i:05d}", "source": source, "duration": duration, "mean_iou": mean,
            "difficulty": 1 - mean, "rewards": rewards, "status": "ok"}  # fmt: skip


def table(n=400, seed=0):
    rng = random.Random(seed)
    return [
        row(i, rng.random(), source=rng.choice("ab"), duration=rng.choice([10, 45, 90, 200]))
        for i in range(n)
    ]


def test_band_and_nonzero_variance():
    rows = [
        row(0, 0.0, rewards=[0, 0]),
        row(1, 0.5),
        row(2, 1.0, rewards=[1, 1]),
        row(3, 0.2, rewards=[0.2, 0.2]),
    ]
    chosen, removed = select(rows, RLConfig(scores=None, out=None, policies=("band",), lo=0.0, hi=1.0))
    assert [r["uid"] for r in chosen] == ["a/test/00001", "a/test/00003"] and removed["band"] == 2
    chosen, _ = select(rows, RLConfig(scores=None, out=None, policies=("nonzero-variance",)))
    assert [r["uid"] for r in chosen] == ["a/test/00001"]


def test_bins_hit_their_proportions():
    cfg = RLConfig(
        scores=None, out=None, policies=("bins",), bin_edges=(0, 0.5, 1.0), bin_shares=(0.8, 0.2), size=100
    )
    chosen, _ = select(table(), cfg)
    hard = sum(r["difficulty"] >= 0.5 for r in chosen)
    assert len(chosen) == 100 and hard == 20


def test_gaussian_centres_the_selection_and_drops_zero():
    rows = table() + [row(1000 + i, 0.0) for i in range(50)]
    cfg = RLConfig(scores=None, out=None, policies=("gaussian",), mu=0.3, sigma=0.1, drop_zero=True, size=100)
    chosen, removed = select(rows, cfg)
    assert removed["gaussian"] == 50 and all(r["mean_iou"] > 0 for r in chosen)
    mean = sum(r["mean_iou"] for r in chosen) / len(chosen)
    assert abs(mean - 0.3) < 0.08


def test_timelens_flattens_within_duration_buckets():
    rows = [row(i, 0.05, duration=20) for i in range(200)] + [
        row(500 + i, 0.3, duration=20) for i in range(20)
    ]
    cfg = RLConfig(scores=None, out=None, policies=("timelens",), size=40)
    chosen, _ = select(rows, cfg)
    rare = sum(r["mean_iou"] == 0.3 for r in chosen)
    # without inverse density the 0.3 rows (weight 0.32 vs 1, 10x fewer) would give about 1 of 40
    assert rare >= 3


def test_quotas_size_and_determinism():
    rows = table()
    cfg = RLConfig(scores=None, out=None, policies=("nonzero-variance",), size=50, quotas={"a": 10}, seed=3)
    chosen, _ = select(rows, cfg)
    assert len(chosen) == 50 and sum(r["source"] == "a" for r in chosen) == 10
    again, _ = select(list(reversed(rows)), cfg)
    assert [r["uid"] for r in again] == [r["uid"] for r in chosen]
    other, _ = select(rows, RLConfig(scores=None, out=None, policies=("gaussian",), size=50, seed=4))
    first, _ = select(rows, RLConfig(scores=None, out=None, policies=("gaussian",), size=50, seed=3))
    assert [r["uid"] for r in other] != [r["uid"] for r in first]


def test_edge_cases():
    assert select([], RLConfig(scores=None, out=None, policies=("gaussian",), size=10))[0] == []
    zeros = [row(i, 0.0, rewards=[0.0, 0.0]) for i in range(10)]
    assert select(zeros, RLConfig(scores=None, out=None, policies=("nonzero-variance",)))[0] == []
    few, _ = select(table(5), RLConfig(scores=None, out=None, policies=("gaussian",), size=100))
    assert len(few) == 5  # fewer samples than requested: all of them
    with pytest.raises(ValueError, match="unknown policy"):
        RLConfig(scores=None, out=None, policies=("easy",))


def full_row(r):
    return r | {"split": "test", "task": "moment_retrieval", "video_id": "v", "video_path": "v.mp4", "duration_source": "annotation",
                "query": "q", "query_raw": "q", "windows": [[0.0, 1.0]], "windows_raw": [[0.0, 1.0]], "raw_unit": "sec", "has_gt": True,
                "flags": [], "benchmarks": [], "provenance": {"file": "f", "sha256": "", "record": "1"}, "extra": "{}",
                "run_id": "r", "ious": r["rewards"]}  # fmt: skip


def test_build_rl_writes_shards_manifest_histograms_and_plot(tmp_path):
    scores = tmp_path / "scores"
    (scores / "scores").mkdir(parents=True)
    rows = [full_row(r) for r in table(60)]
    import pyarrow.parquet as pq

    pq.write_table(
        pa.Table.from_pylist(rows, schema=SCORE_SCHEMA), scores / "scores/shard-00000-of-00001.parquet"
    )
    manifest = build_rl(
        RLConfig(
            scores=scores,
            out=tmp_path / "rl",
            policies=("band", "gaussian"),
            lo=0.1,
            hi=0.9,
            size=20,
            shards=2,
        )
    )
    assert manifest["counts"]["selected"] == 20
    hist = manifest["mean_iou_histogram"]
    assert sum(hist["before"]) == 60 and sum(hist["after"]) == 20 and len(hist["after"]) == 20
    files = sorted((tmp_path / "rl/data").glob("*.parquet"))
    assert len(files) == 2 and sum(pq.read_table(f).num_rows for f in files) == 20
    assert (tmp_path / "rl/difficulty_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "rl/manifest.json").read_text())["config"]["policies"] == [
        "band",
        "gaussian",
    ]
