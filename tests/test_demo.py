import json

import polars as pl
import pytest
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.grounding.baselines import mean_relative_window, prior_windows


def test_demo_runs_every_stage_and_scores_a_baseline(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--root", str(tmp_path), "--n-videos", "4", "--no-recipe"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    test_rows = pl.read_parquet(tmp_path / "normalized/synthetic/test.parquet").height
    assert metrics["counts"]["scored"] == test_rows > 0
    assert 0 <= metrics["metrics"]["mIoU"] <= 100
    assert "| R1@0.1 |" in result.output
    page = (tmp_path / "report.html").read_text()  # the demo ends with its report
    assert all(
        f"<h2>{title}</h2>" in page for title in ("What ran", "Cold-start funnel", "Difficulty", "Metrics")
    )
    assert "No cold-start run given" not in page and "No evaluation run given" not in page


def test_prior_baseline_scales_the_mean_relative_window():
    train = pl.DataFrame(
        {"duration": [10.0, 20.0], "windows": [[[0.0, 5.0]], [[10.0, 20.0]]], "has_gt": [True, True]}
    )
    assert mean_relative_window(train) == pytest.approx((0.25, 0.75))
    test = pl.DataFrame({"uid": ["a"], "duration": [40.0]})
    assert prior_windows(train, test) == [{"uid": "a", "windows": [[10.0, 30.0]]}]
