"""`vtg-data eval`: scoring predictions, official QVHighlights parity, clear errors."""

import json
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from vtg_data.cli import app

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
from qvh_predictions import write_predictions  # noqa: E402

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.corpora
def test_qvhighlights_metrics_match_the_official_evaluator(shared_corpora, tmp_path):
    gt = shared_corpora / "qvhighlights" / "highlight_val_release.jsonl"
    golden = json.loads((GOLDEN / "qvhighlights_val_mr_metrics.json").read_text())
    predictions = write_predictions(gt, tmp_path / "preds.jsonl", seed=golden["seed"])
    result = run("eval", "--predictions", predictions, "--gt", gt, "--out", tmp_path / "metrics.json")
    assert result.exit_code == 0, result.output
    official = golden["metrics"]
    ours = json.loads((tmp_path / "metrics.json").read_text())
    for length_range, kinds in official.items():
        for kind, values in kinds.items():
            for threshold, value in values.items():
                assert ours["detail"]["official"][length_range][kind][threshold] == pytest.approx(
                    value, abs=0.01
                )
    assert ours["metrics"]["mAP"] == official["full"]["MR-mAP"]["average"]
    assert ours["metrics"]["R1@0.7"] == official["full"]["MR-R1"]["0.7"]
    assert ours["metrics"]["mAP_short"] == official["short"]["MR-mAP"]["average"]
    assert "| R1@0.5 | R1@0.7 | mAP |" in result.output


@pytest.mark.corpora
def test_qvhighlights_against_normalized_rows_gives_the_same_numbers(shared_corpora, tmp_path):
    from vtg_data.stages.download import DownloadConfig, download

    download(
        DownloadConfig("qvhighlights", tmp_path, splits=("val",), from_dir=shared_corpora / "qvhighlights")
    )
    gt = shared_corpora / "qvhighlights" / "highlight_val_release.jsonl"
    predictions = write_predictions(gt, tmp_path / "preds.jsonl")
    a = run("eval", "--predictions", predictions, "--gt", gt, "--out", tmp_path / "a.json")
    b = run(
        "eval",
        "--predictions",
        predictions,
        "--gt",
        tmp_path / "normalized/qvhighlights/val.parquet",
        "--out",
        tmp_path / "b.json",
    )
    assert a.exit_code == 0 and b.exit_code == 0, b.output
    assert (
        json.loads((tmp_path / "a.json").read_text())["metrics"]
        == json.loads((tmp_path / "b.json").read_text())["metrics"]
    )


def predictions_for(table: Path, out: Path, make) -> Path:
    rows = pl.read_parquet(table).to_dicts()
    out.write_text("".join(json.dumps(make(row)) + "\n" for row in rows))
    return out


def test_scoring_model_text_on_the_synthetic_corpus(synthetic_root, tmp_path):
    table = synthetic_root / "normalized/synthetic/test.parquet"
    rows = pl.read_parquet(table).to_dicts()

    def answer(row):
        s, e = row["windows"][0]
        index = int(row["uid"].rsplit("/", 1)[1])
        if index % 3 == 0:
            return {"uid": row["uid"], "text": f"<think>I see it.</think> <time>[{s}, {e}]</time>"}
        if index % 3 == 1:
            return {"uid": row["uid"], "text": f"It happens from {s + (e - s) / 2:.2f} to {e + 100} seconds."}
        return {"uid": row["uid"], "text": "I cannot tell."}

    predictions = predictions_for(table, tmp_path / "p.jsonl", answer)
    result = run(
        "eval", "--predictions", predictions, "--gt", table, "--out", tmp_path / "m.json", "--bootstrap", 100
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    exact = sum(int(r["uid"].rsplit("/", 1)[1]) % 3 == 0 for r in rows)
    failed = sum(int(r["uid"].rsplit("/", 1)[1]) % 3 == 2 for r in rows)
    assert metrics["metrics"]["R1@0.9"] >= 100 * exact / len(rows) - 1e-6
    assert metrics["counts"]["parse_failures"] == failed
    assert metrics["detail"]["parse_failures"] == ({"no_window": failed} if failed else {})
    assert metrics["card"]["parse_mode"] == "tolerant" and metrics["card"]["hit_rule"] == ">="
    assert set(metrics["detail"]["ci95"]) >= {"R1@0.5", "mIoU"}
    strict = run(
        "eval",
        "--predictions",
        predictions,
        "--gt",
        table,
        "--parse-mode",
        "strict",
        "--out",
        tmp_path / "s.json",
    )
    assert strict.exit_code == 0, strict.output
    assert json.loads((tmp_path / "s.json").read_text())["counts"]["parse_failures"] == len(rows) - exact


def test_windows_predictions_and_hit_rules(synthetic_root, tmp_path):
    table = synthetic_root / "normalized/synthetic/test.parquet"

    def half(row):  # IoU exactly 0.5: a hit with >=, a miss with >
        s, e = row["windows"][0]
        return {"uid": row["uid"], "windows": [[s, s + (e - s) / 2]]}

    predictions = predictions_for(table, tmp_path / "p.jsonl", half)
    ge = run(
        "eval", "--predictions", predictions, "--gt", table, "--out", tmp_path / "ge.json", "--bootstrap", 0
    )
    gt = run(
        "eval",
        "--predictions",
        predictions,
        "--gt",
        table,
        "--hit-rule",
        ">",
        "--out",
        tmp_path / "gt.json",
        "--bootstrap",
        0,
    )
    assert ge.exit_code == 0 and gt.exit_code == 0
    assert json.loads((tmp_path / "ge.json").read_text())["metrics"]["R1@0.5"] == 100.0
    assert json.loads((tmp_path / "gt.json").read_text())["metrics"]["R1@0.5"] == 0.0


def test_missing_predictions_are_an_error_unless_allowed(synthetic_root, tmp_path):
    table = synthetic_root / "normalized/synthetic/test.parquet"
    first = pl.read_parquet(table).row(0, named=True)
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(json.dumps({"uid": first["uid"], "windows": [first["windows"][0]]}) + "\n")
    refused = run("eval", "--predictions", predictions, "--gt", table)
    assert refused.exit_code != 0 and "have no prediction" in refused.output
    allowed = run("eval", "--predictions", predictions, "--gt", table, "--allow-missing", "--bootstrap", 0)
    assert allowed.exit_code == 0 and "missing" in allowed.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{bad json\n", "line 1: malformed JSON"),
        ('{"uid": "x"}\n', "needs 'text' or 'windows'"),
        ("", "no predictions"),
    ],
)
def test_bad_prediction_files(synthetic_root, tmp_path, content, message):
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(content)
    result = run(
        "eval", "--predictions", predictions, "--gt", synthetic_root / "normalized/synthetic/test.parquet"
    )
    assert result.exit_code != 0 and message in result.output
