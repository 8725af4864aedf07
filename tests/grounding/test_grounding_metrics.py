import pytest
from hypothesis import given
from hypothesis import strategies as st

from vtg_data.grounding.metrics import (
    SampleScore,
    best_match,
    bootstrap_ci,
    grounding_report,
    iop,
    iou,
    is_hit,
    paired_gain,
    paired_gain_over_runs,
    summarize,
)

window = st.tuples(st.floats(0, 1000, allow_nan=False), st.floats(0, 1000, allow_nan=False)).map(
    lambda p: (min(p), max(p))
)


@given(window, window)
def test_iou_is_symmetric_and_bounded(a, b):
    assert iou(a, b) == pytest.approx(iou(b, a))
    assert 0.0 <= iou(a, b) <= 1.0


@given(window)
def test_iou_identity(a):
    assert iou(a, a) == 1.0


@given(window, window)
def test_iou_is_at_most_iop(a, b):
    assert iou(a, b) <= iop(a, b) + 1e-9


def test_known_values():
    assert iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert iou((0, 10), (10, 20)) == 0.0
    assert iou((4.97, 4.97), (4.97, 4.97)) == 1.0 and iou((4.97, 4.97), (0, 10)) == 0.0
    assert iop((2, 4), (0, 10)) == 1.0 and iop((8, 12), (0, 10)) == 0.5
    assert best_match((134, 140), [(0, 4), (134, 138), (140, 150)]) == (pytest.approx(4 / 6), 4 / 6)


def test_hit_rules_differ_only_at_the_threshold():
    assert is_hit(0.5, 0.5, ">=") and not is_hit(0.5, 0.5, ">")
    assert is_hit(0.51, 0.5, ">") and not is_hit(0.49, 0.5, ">=")
    with pytest.raises(ValueError):
        is_hit(0.5, 0.5, "~")


def scores(values, source="a", status="ok"):
    return [SampleScore(f"u{i}", source, v, v, status) for i, v in enumerate(values)]


def test_summary_and_report():
    data = (
        scores([1.0, 0.5, 0.3, 0.0])
        + scores([0.7], source="b")
        + scores([0.0], source="b", status="no_window")
    )
    summary = summarize(data, thresholds=(0.3, 0.5, 0.7))
    assert summary["n"] == 6
    assert summary["R1@0.5"] == pytest.approx(100 * 3 / 6)
    assert summary["mIoU"] == pytest.approx(100 * 2.5 / 6)
    assert summarize(data, thresholds=(0.5,), rule=">")["R1@0.5"] == pytest.approx(100 * 2 / 6)
    report = grounding_report(data, thresholds=(0.3, 0.5, 0.7), resamples=200)
    assert report["by_source"]["b"]["n"] == 2 and report["parse_failures"] == {"no_window": 1}
    low, high = report["ci95"]["mIoU"]
    assert low <= summary["mIoU"] <= high


def test_bootstrap_is_seeded_and_narrows_with_more_queries():
    few = scores([0.1, 0.9] * 5)
    many = scores([0.1, 0.9] * 200)
    a = bootstrap_ci(few, ["mIoU"], resamples=300, seed=1)["mIoU"]
    assert a == bootstrap_ci(few, ["mIoU"], resamples=300, seed=1)["mIoU"]
    b = bootstrap_ci(many, ["mIoU"], resamples=300, seed=1)["mIoU"]
    assert (b[1] - b[0]) < (a[1] - a[0])


def test_paired_gain_is_the_mean_difference_with_an_interval_over_queries():
    assert paired_gain([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]) == {"gain": 1.0, "lo": 1.0, "hi": 1.0, "queries": 3}
    # half the queries gain 0.2, half nothing: mean 0.1, every resample lies within [0, 0.2]
    spread = paired_gain([0.7, 0.5] * 25, [0.5, 0.5] * 25, seed=3)
    assert spread["gain"] == pytest.approx(0.1) and 0.0 <= spread["lo"] < 0.1 < spread["hi"] <= 0.2
    # a shared per-query offset does not widen the interval: pairing removes it
    offsets = [i / 50 for i in range(50)]
    paired = paired_gain([o + 0.05 for o in offsets], offsets)
    assert paired["lo"] == pytest.approx(0.05) and paired["hi"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="equally long"):
        paired_gain([0.1], [])


def test_gain_over_runs_is_the_mean_of_runs_with_a_tighter_interval_than_one_run():
    noisy = [([0.5 + (0.3 if i % 2 else -0.22) for i in range(100)], [0.5] * 100)]  # each run: +0.04 +- 0.26
    one = paired_gain(*noisy[0], seed=1)
    pooled = paired_gain_over_runs(noisy * 5, seed=1)
    assert pooled["gain"] == pytest.approx(one["gain"]) and pooled["runs"] == 5
    # five runs' queries resampled: the interval shrinks by about sqrt(5)
    assert (pooled["hi"] - pooled["lo"]) < 0.6 * (one["hi"] - one["lo"])
    assert pooled["lo"] > 0 > one["lo"]
    # runs of different sizes weigh equally (a mean over seeds, not over pooled queries)
    mixed = paired_gain_over_runs([([1.0] * 10, [0.0] * 10), ([0.0] * 90, [0.0] * 90)])
    assert mixed["gain"] == pytest.approx(0.5) and mixed["lo"] == mixed["hi"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="run 1: needs two equally long"):
        paired_gain_over_runs([([0.1], [0.2]), ([0.1], [])])
