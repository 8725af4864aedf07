import json

from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.stats import compute_stats


def test_stats_counts_match_the_tables(synthetic_root):
    result = compute_stats(synthetic_root / "normalized/synthetic")
    assert sum(g["queries"] for g in result["groups"]) == result["queries"] > 0
    assert {g["split"] for g in result["groups"]} == {"train", "test"}
    assert result["videos"] == 4 and result["videos_missing"] == 0
    assert 0 < result["window_fraction"]["max"] <= 1
    assert result["video_duration"]["max"] <= 20.0


def test_stats_cli_prints_json_and_fails_on_missing_path(synthetic_root, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["stats", str(synthetic_root / "normalized"), "--json"])
    assert ok.exit_code == 0
    assert json.loads(ok.output)["queries"] > 0
    bad = runner.invoke(app, ["stats", str(tmp_path / "nothing")])
    assert bad.exit_code != 0 and "no such file" in bad.output
