"""`build rl` policies on made-up score tables: proportions, determinism, edge cases."""

import json
import random
from collections import Counter

import pyarrow as pa
import pytest

from vtg_data.stages.difficulty import SCORE_SCHEMA
from vtg_data.stages.rl_select import iou_histogram_bin, select, timelens_weights
from vtg_data.stages.rlset import RLConfig, build_rl


def pick(rows, cfg, span_target=None):
    selection = select(rows, cfg, span_target)
    return selection.rows, selection.removed


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
    chosen, removed = pick(rows, RLConfig(scores=None, out=None, policies=("band",), lo=0.0, hi=1.0))
    assert [r["uid"] for r in chosen] == ["a/test/00001", "a/test/00003"] and removed["band"] == 2
    chosen, _ = pick(rows, RLConfig(scores=None, out=None, policies=("nonzero-variance",)))
    assert [r["uid"] for r in chosen] == ["a/test/00001"]


def test_bins_hit_their_proportions():
    cfg = RLConfig(
        scores=None, out=None, policies=("bins",), bin_edges=(0, 0.5, 1.0), bin_shares=(0.8, 0.2), size=100
    )
    chosen, _ = pick(table(), cfg)
    hard = sum(r["difficulty"] >= 0.5 for r in chosen)
    assert len(chosen) == 100 and hard == 20


def test_gaussian_centres_the_selection_and_drops_zero():
    rows = table() + [row(1000 + i, 0.0) for i in range(50)]
    cfg = RLConfig(scores=None, out=None, policies=("gaussian",), mu=0.3, sigma=0.1, drop_zero=True, size=100)
    chosen, removed = pick(rows, cfg)
    assert removed["gaussian"] == 50 and all(r["mean_iou"] > 0 for r in chosen)
    mean = sum(r["mean_iou"] for r in chosen) / len(chosen)
    assert abs(mean - 0.3) < 0.08


def test_timelens_takes_an_equal_quota_from_each_of_nine_30_second_buckets():
    durations = (
        [3.0] * 2 + [600.0] + [30.0] * 3 + [30.5, 60.0] + [100.0] * 5 + [240.0] + [241.0] * 4 + [500.0]
    )
    rows = [row(i, 0.1 + 0.02 * i, duration=d) for i, d in enumerate(durations)]
    selection = select(rows, RLConfig(scores=None, out=None, policies=("timelens",), size=18))
    # int(18 / 9) = 2 per bucket; 3 s and 600 s are outside TimeLens's 5-500 s; 30.0 belongs to [0, 30],
    # 60.0 to [30, 60], 240.0 to [210, 240]; no bucket's shortfall moves to another bucket
    report = selection.reports["timelens"]
    assert report["quota_per_bucket"] == 2
    assert [b["bucket"] for b in report["buckets"]] == [
        "0-30 s", "30-60 s", "60-90 s", "90-120 s", "120-150 s", "150-180 s", "180-210 s", "210-240 s", "240-inf s"
    ]  # fmt: skip
    assert [b["rows"] for b in report["buckets"]] == [3, 2, 0, 5, 0, 0, 0, 1, 5]
    assert [b["selected"] for b in report["buckets"]] == [2, 2, 0, 2, 0, 0, 0, 1, 2]
    assert len(selection.rows) == 9 and selection.removed["timelens"] == 3
    assert not any(r["duration"] in (3.0, 600.0) for r in selection.rows)


def test_timelens_weight_is_a_gaussian_over_the_bin_count_within_a_bucket():
    # bins of 0.05 on [0, 1]: 0.05 twice in bin 1, 0.25 alone in bin 5; exp(-0.5 * (0.2 / 0.2) ** 2) = 0.60653
    assert timelens_weights([0.05, 0.05, 0.25], 0.05, 0.2) == pytest.approx([0.5, 0.5, 0.60653], abs=1e-5)
    rows = [row(0, 0.05, duration=20), row(1, 0.05, duration=20), row(2, 0.25, duration=20)]
    picked = Counter()
    for seed in range(3000):
        cfg = RLConfig(scores=None, out=None, policies=("timelens",), size=9, seed=seed)  # one row per bucket
        picked.update(r["uid"] for r in select(rows, cfg).rows)
    assert sum(picked.values()) == 3000
    assert picked["a/test/00002"] / 3000 == pytest.approx(0.60653 / 1.60653, abs=0.03)


def test_timelens_histogram_bins_are_numpys():
    import numpy as np

    values = [0.0, 0.05, 0.1, 0.15, 0.2, 0.35, 0.45, 0.55, 0.7, 0.85, 0.95, 0.999, 1.0] + [
        i / 997 for i in range(998)
    ]
    counts, edges = np.histogram(values, bins=20, range=(0, 1))
    expected = np.clip(np.digitize(values, bins=edges), 1, 20) - 1
    assert [iou_histogram_bin(v) for v in values] == expected.tolist()
    assert (
        Counter(iou_histogram_bin(v) for v in values) == Counter(dict(enumerate(counts.tolist()))) - Counter()
    )


def test_timelens_needs_a_size_and_one_stratified_draw_at_a_time():
    with pytest.raises(ValueError, match="give --size"):
        RLConfig(scores=None, out=None, policies=("timelens",))
    with pytest.raises(ValueError, match="at most one of"):
        RLConfig(scores=None, out=None, policies=("timelens", "bins"), size=10)


def test_quotas_size_and_determinism():
    rows = table()
    cfg = RLConfig(scores=None, out=None, policies=("nonzero-variance",), size=50, quotas={"a": 10}, seed=3)
    chosen, _ = pick(rows, cfg)
    assert len(chosen) == 50 and sum(r["source"] == "a" for r in chosen) == 10
    again, _ = pick(list(reversed(rows)), cfg)
    assert [r["uid"] for r in again] == [r["uid"] for r in chosen]
    other, _ = pick(rows, RLConfig(scores=None, out=None, policies=("gaussian",), size=50, seed=4))
    first, _ = pick(rows, RLConfig(scores=None, out=None, policies=("gaussian",), size=50, seed=3))
    assert [r["uid"] for r in other] != [r["uid"] for r in first]


def test_edge_cases():
    assert pick([], RLConfig(scores=None, out=None, policies=("gaussian",), size=10))[0] == []
    zeros = [row(i, 0.0, rewards=[0.0, 0.0]) for i in range(10)]
    assert pick(zeros, RLConfig(scores=None, out=None, policies=("nonzero-variance",)))[0] == []
    few, _ = pick(table(5), RLConfig(scores=None, out=None, policies=("gaussian",), size=100))
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
