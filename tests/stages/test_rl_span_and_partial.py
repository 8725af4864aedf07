"""`build rl`'s span-stratified draw and partial-annotation filter on constructed score tables."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.stages.difficulty import SCORE_SCHEMA
from vtg_data.stages.partial_annotation import PartialRule, check_partial, consensus_window
from vtg_data.stages.rl_select import select
from vtg_data.stages.rlset import RLConfig
from vtg_data.stages.span_strata import SpanGrid, allocate, target_from_tables

SHORT, MEDIUM = (0, 0), (3, 1)  # 0-2 s covering < 10% of the video; 10-20 s covering 10-25%


def score_row(i, windows, duration, *, rollouts=None, mean=0.4, source="a"):
    rollouts = rollouts if rollouts is not None else [[0.0, 1.0], [0.5, 1.5]]
    return {"uid": f"{source}/train/{i:05d}", "source": source, "split": "train", "task": "moment_retrieval",
            "video_id": f"v{i}", "video_path": f"v{i}.mp4", "duration": duration, "duration_source": "annotation",
            "query": f"query {i}", "query_raw": f"query {i}", "windows": windows, "windows_raw": windows,
            "raw_unit": "sec", "has_gt": True, "flags": [], "benchmarks": [],
            "provenance": {"file": "f", "sha256": "", "record": str(i)}, "extra": "{}", "status": "ok",
            "run_id": "r", "rollouts": ["<answer>x</answer>"] * len(rollouts), "rollout_windows": rollouts,
            "parse_status": ["ok" if w else "no_answer" for w in rollouts], "ious": [mean] * len(rollouts),
            "rewards": [mean, mean + 0.1] + [mean] * (len(rollouts) - 2), "mean_iou": mean, "std_iou": 0.05,
            "difficulty": 1 - mean}  # fmt: skip


def pool():
    short = [score_row(i, [[3.0, 4.0]], 30.0) for i in range(20)]  # 1 s of 30 s
    medium = [score_row(100 + i, [[10.0, 25.0]], 100.0) for i in range(100)]  # 15 s of 100 s
    return short + medium


def test_grid_cells_follow_length_and_coverage():
    grid = SpanGrid()
    assert grid.cell([[3.0, 4.0]], 30.0) == SHORT
    assert grid.cell([[10.0, 25.0]], 100.0) == MEDIUM
    assert grid.cell([[0.0, 2.0]], 100.0) == (1, 0)  # 2 s is the first second of the 2-5 s bin
    assert grid.cell([[0.0, 30.0], [50.0, 60.0]], 60.0) == (5, 3)  # 40 s in all, two thirds of the video
    assert grid.cell([[0.0, 0.0]], 10.0) is None and grid.cell([[1.0, 2.0]], None) is None


def test_allocation_moves_a_cells_shortfall_to_the_other_target_cells():
    # 10 rows at 50/30/20: b has only 2, so its third row goes to a (0.5 of the remaining 0.7 beats c's 0.2)
    assert allocate({"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 100, "b": 2, "c": 100}, 10) == {
        "a": 6,
        "b": 2,
        "c": 2,
    }
    # cells outside the target never receive rows, even when the target cells run dry
    assert allocate({"a": 1.0, "z": 0.0}, {"a": 3, "z": 50}, 10) == {"a": 3, "z": 0}
    # no size: the largest set meeting every non-empty target cell exactly (20 / 0.5 = 40)
    assert allocate({"a": 0.5, "b": 0.5}, {"a": 20, "b": 100}, None) == {"a": 20, "b": 20}


def test_span_stratified_matches_the_target_and_reports_achieved_vs_target():
    target = ({SHORT: 0.5, MEDIUM: 0.5}, 200)
    cfg = RLConfig(scores=None, out=None, policies=("span-stratified",), size=30)
    selection = select(pool(), cfg, target)
    grid = SpanGrid()
    cells = [grid.cell(r["windows"], r["duration"]) for r in selection.rows]
    assert cells.count(SHORT) == 15 and cells.count(MEDIUM) == 15
    report = selection.reports["span-stratified"]
    assert report["tv_distance"] == {"pool": pytest.approx(0.5 - 20 / 120, abs=1e-4), "achieved": 0.0}
    assert report["by_length"]["target"][0] == 0.5 and report["by_length"]["achieved"][0] == 0.5

    short_of_rows = select(
        pool(), RLConfig(scores=None, out=None, policies=("span-stratified",), size=60), target
    )
    cells = [grid.cell(r["windows"], r["duration"]) for r in short_of_rows.rows]
    assert (cells.count(SHORT), cells.count(MEDIUM)) == (20, 40)
    assert short_of_rows.reports["span-stratified"]["tv_distance"]["achieved"] == pytest.approx(
        1 / 6, abs=1e-4
    )


def test_span_target_is_measured_on_benchmark_tables(tmp_path):
    path = tmp_path / "bench.parquet"
    pq.write_table(pa.table({"windows": [[[1.0, 2.0]], [[1.0, 2.5]], [[10.0, 25.0]], [[0.0, 5.0]]],
                             "duration": [30.0, 30.0, 100.0, 40.0], "has_gt": [True, True, True, False]}), path)  # fmt: skip
    shares, rows = target_from_tables([path], SpanGrid())
    assert rows == 3 and shares[SHORT] == pytest.approx(2 / 3) and shares[MEDIUM] == pytest.approx(1 / 3)
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        target_from_tables([tmp_path / "missing.parquet"], SpanGrid())


AGREE_WIDE = [[7.8, 22.1], [8.2, 21.7], [8.0, 22.4], [7.5, 21.9]]


def test_partial_annotation_needs_agreeing_rollouts_on_a_wider_window_around_the_truth():
    rule = PartialRule()
    partial = score_row(1, [[10.0, 14.0]], 60.0, rollouts=AGREE_WIDE)
    found = check_partial(partial, rule)
    assert found["consensus"] == [7.9, 22.0] and found["agreement"] > 0.9
    assert found["gt_share_of_consensus"] == pytest.approx(4 / 14.1, abs=1e-3)

    scattered = score_row(
        2, [[10.0, 14.0]], 60.0, rollouts=[[0.0, 30.0], [20.0, 25.0], [8.0, 50.0], [40.0, 58.0]]
    )
    beside = score_row(
        3, [[10.0, 14.0]], 60.0, rollouts=[[20.0, 30.0]] * 4
    )  # agree, but not around the truth
    on_truth = score_row(4, [[10.0, 14.0]], 60.0, rollouts=[[9.8, 14.1]] * 4)  # agree with the annotation
    unparsed = score_row(5, [[10.0, 14.0]], 60.0, rollouts=[[8.0, 22.0], [], [], []])
    assert [check_partial(r, rule) for r in (scattered, beside, on_truth, unparsed)] == [None] * 4
    assert consensus_window([[], []]) is None


def test_partial_annotation_drops_or_flags_and_always_lists(tmp_path):
    rows = [score_row(1, [[10.0, 14.0]], 60.0, rollouts=AGREE_WIDE)] + [
        score_row(10 + i, [[10.0, 14.0]], 60.0, rollouts=[[9.8, 14.1], [10.2, 15.0]]) for i in range(5)
    ]
    dropped = select(
        rows, RLConfig(scores=None, out=None, policies=("partial-annotation", "nonzero-variance"))
    )
    assert len(dropped.rows) == 5 and dropped.removed["partial-annotation"] == 1
    assert [p["uid"] for p in dropped.partial] == ["a/train/00001"] and not dropped.partial[0]["selected"]
    flagged = select(
        rows, RLConfig(scores=None, out=None, policies=("partial-annotation",), partial_action="flag")
    )
    assert len(flagged.rows) == 6 and flagged.partial[0]["selected"]
    assert flagged.reports["partial-annotation"] == {"flagged": 1, "action": "flag", "by_source": {"a": 1}}


def test_build_rl_cli_runs_both_rules_and_writes_their_reports(tmp_path):
    scores = tmp_path / "scores"
    (scores / "scores").mkdir(parents=True)
    rows = pool() + [score_row(500, [[3.0, 4.0]], 30.0, rollouts=[[1.0, 9.0], [1.2, 9.1], [0.8, 8.8]])]
    pq.write_table(
        pa.Table.from_pylist(rows, schema=SCORE_SCHEMA), scores / "scores/shard-00000-of-00001.parquet"
    )
    bench = tmp_path / "bench.parquet"
    pq.write_table(pa.table({"windows": [[[1.0, 2.0]], [[10.0, 25.0]]], "duration": [30.0, 100.0],
                             "has_gt": [True, True]}), bench)  # fmt: skip
    result = CliRunner().invoke(app, [
        "build", "rl", "--scores", str(scores), "--out", str(tmp_path / "rl"), "--policy", "partial-annotation",
        "--policy", "span-stratified", "--span-target", str(bench), "--size", "30", "--shards", "2",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "span length: target vs pool vs selected" in result.output
        and "partial-annotation: 1" in result.output
    )
    manifest = json.loads((tmp_path / "rl/manifest.json").read_text())
    assert manifest["counts"]["selected"] == 30 and manifest["counts"]["removed"]["partial-annotation"] == 1
    assert manifest["policy_reports"]["span-stratified"]["tv_distance"]["achieved"] == 0.0
    listed = [
        json.loads(line) for line in (tmp_path / "rl/partial_annotations.jsonl").read_text().splitlines()
    ]
    assert [item["uid"] for item in listed] == ["a/train/00500"]
    written = pa.concat_tables([pq.read_table(f) for f in sorted((tmp_path / "rl/data").glob("*.parquet"))])
    assert written.num_rows == 30 and written.column("rollouts")[0].as_py() == ["<answer>x</answer>"] * 2

    missing = CliRunner().invoke(app, ["build", "rl", "--scores", str(scores), "--out", str(tmp_path / "x"),
                                       "--policy", "span-stratified"])  # fmt: skip
    assert missing.exit_code != 0 and "--span-target" in missing.output
