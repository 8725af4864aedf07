"""Evaluation protocols and rewards against the papers' own code.

``golden/paper_vectors.json`` holds answer strings of the forms real models emit, ground truths, and
what the official functions returned on them, run unmodified (TVG-R1 @793b3dc: eval_auto.py,
tvgonly.py, tvg.py; Time-R1 @7f2b594: evaluate.py, eval_all.py, main.py; TimeLens @5d90c06:
timelens/utils.py as compute_metrics.py uses it; see the file's ``about``). The project's code is
its own; these tests hold it to those outputs, per answer and as whole tables.
"""

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vtg_data.evaluate import EvalConfig, EvalInputError, evaluate
from vtg_data.grounding.paper_rewards import RewardError, time_r1_format, time_r1_iou_v2, tvg_mc_reward
from vtg_data.grounding.protocols import PROTOCOLS, ProtocolError, score_answer
from vtg_data.grounding.rewards import compute_reward
from vtg_data.schema import QUERY_SCHEMA

VECTORS = json.loads((Path(__file__).parent / "golden/paper_vectors.json").read_text())
STRINGS, TRUTHS = VECTORS["strings"], VECTORS["ground_truths"]
CASES = VECTORS["cases"]


def case_id(case):
    return f"truth{case['truth']}-{STRINGS[case['string']][:40]!r}"


def row(case, source="charades_sta"):
    truth = TRUTHS[case["truth"]]
    return {"windows": truth["windows"], "duration": truth["duration"], "source": source}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rewards_equal_the_papers_own(case):
    text, sample = STRINGS[case["string"]], row(case)
    first = {"windows": sample["windows"][:1], "duration": sample["duration"]}  # the papers reward one window
    assert compute_reward(text, first, "tvg_r1").total == pytest.approx(case["tvg_r1_reward"], abs=1e-12)
    truth = sample["windows"][0]
    if isinstance(case["time_r1_iou_v2"], str):
        assert case["time_r1_iou_v2"] == "raises UnboundLocalError"
        with pytest.raises(RewardError):
            time_r1_iou_v2(text, truth, sample["duration"])
        with pytest.raises(RewardError):
            compute_reward(text, first, "time_r1")
        assert compute_reward(text, first, "time_r1_corrected").total >= 0  # the corrected preset answers
    else:
        assert time_r1_iou_v2(text, truth, sample["duration"]) == pytest.approx(
            case["time_r1_iou_v2"], abs=1e-12
        )
        total = case["time_r1_iou_v2"] + case["time_r1_format"]
        assert compute_reward(text, first, "time_r1").total == pytest.approx(total, abs=1e-12)
    assert time_r1_format(text) == case["time_r1_format"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_each_protocol_reads_and_scores_an_answer_as_its_paper_does(case):
    text = STRINGS[case["string"]]
    for source in ("charades_sta", "activitynet"):
        official = case[f"tvg_r1_eval_{source}"]
        value, _ = score_answer(PROTOCOLS["tvg_r1"], text, row(case, source))
        assert value == pytest.approx(official["iou"], abs=1e-7), source
        hits = [PROTOCOLS["tvg_r1"].hit(value, t) for t in (0.3, 0.5, 0.7, 0.9)]
        assert hits == official["hits"], source
    value, _ = score_answer(PROTOCOLS["time_r1"], text, row(case))
    expected = case["time_r1_eval_iou"]
    assert math.isnan(value) if expected is None else value == pytest.approx(expected, abs=1e-12)
    if isinstance(case["timelens_iou"], str):
        with pytest.raises(ProtocolError):
            score_answer(PROTOCOLS["timelens"], text, row(case))
    else:
        value, _ = score_answer(PROTOCOLS["timelens"], text, row(case))
        assert value == pytest.approx(case["timelens_iou"], abs=1e-12)


@pytest.mark.parametrize("item", VECTORS["multiple_choice"], ids=lambda m: repr(m["string"][:50]))
def test_tvg_r1_multiple_choice_score_equals_its_own(item):
    score = tvg_mc_reward(item["string"], item["truth"], item["duration"], item["letter"])
    assert score["total"] == pytest.approx(item["tvg_score"], abs=1e-12)


def write_table(folder: Path, truth_index: int, source: str) -> Path:
    truth = TRUTHS[truth_index]
    rows = []
    for i in range(len(STRINGS)):
        rows.append({name: None for name in QUERY_SCHEMA.names} | {
            "uid": f"{source}/test/{i}", "source": source, "split": "test", "task": "moment_retrieval",
            "video_id": f"v{i}", "video_path": f"v{i}.mp4", "duration": truth["duration"],
            "duration_source": "annotation", "query": "q", "query_raw": "q", "windows": truth["windows"],
            "windows_raw": truth["windows"], "raw_unit": "sec", "has_gt": True, "flags": [], "benchmarks": [],
            "extra": "{}", "provenance": {"file": "vectors", "sha256": "", "record": str(i)},
        })  # fmt: skip
    table = folder / f"{source}-{truth_index}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=QUERY_SCHEMA), table)
    return table


def evaluate_strings(tmp_path, truth_index, source, protocol):
    table = write_table(tmp_path, truth_index, source)
    predictions = tmp_path / f"{source}-{truth_index}.jsonl"
    predictions.write_text(
        "".join(json.dumps({"uid": f"{source}/test/{i}", "text": s}) + "\n" for i, s in enumerate(STRINGS))
    )
    return evaluate(
        EvalConfig(predictions, table, protocol=protocol, thresholds=(0.3, 0.5, 0.7, 0.9), bootstrap=0)
    )


@pytest.mark.parametrize(
    "official", VECTORS["tvg_r1_tables"], ids=lambda t: f"{t['source']}-truth{t['truth']}"
)
def test_eval_protocol_tvg_r1_gives_its_evaluators_table(tmp_path, official):
    result = evaluate_strings(tmp_path, official["truth"], official["source"], "tvg_r1")
    ours = [result.metrics[f"R1@{t}"] for t in (0.3, 0.5, 0.7, 0.9)]
    assert ours == pytest.approx(official["r1"], abs=0.01) and result.metrics["mIoU"] == pytest.approx(
        official["miou"], abs=0.01
    )
    assert result.card["protocol"]["name"] == "tvg_r1" and "793b3dc" in result.card["protocol"]["origin"]


@pytest.mark.parametrize("truth_index", [0, 2, 3])
def test_eval_protocols_time_r1_and_timelens_give_their_tables(tmp_path, truth_index):
    cases = [c for c in CASES if c["truth"] == truth_index]
    n = len(cases)
    for protocol, key, above in (("time_r1", "time_r1_eval_iou", True), ("timelens", "timelens_iou", False)):
        ious = [c[key] or 0.0 for c in cases]
        official = {
            f"R1@{t}": 100 * sum((v > t) if above else (v >= t) for v in ious) / n for t in (0.3, 0.5, 0.7)
        }
        official["mIoU"] = 100 * sum(ious) / n
        result = evaluate_strings(tmp_path, truth_index, "activitynet", protocol)
        for key_name, value in official.items():
            assert result.metrics[key_name] == pytest.approx(value, abs=0.01), (protocol, key_name)


def test_the_default_protocol_and_the_papers_disagree_by_points_on_the_same_answers(tmp_path):
    default = evaluate_strings(tmp_path, 0, "charades_sta", "vtg-data").metrics
    tvg = evaluate_strings(tmp_path, 0, "charades_sta", "tvg_r1").metrics
    assert default["R1@0.5"] != tvg["R1@0.5"] and default["mIoU"] != tvg["mIoU"]


def test_a_zero_hull_stops_timelens_as_its_evaluator_stops(tmp_path):
    with pytest.raises(EvalInputError, match="TimeLens's IoU divides by zero"):
        evaluate_strings(tmp_path, 1, "activitynet", "timelens")
