"""``--video-root`` means the data root's ``videos/`` folder everywhere: a table mixing two
sources finds every video in eval, score-difficulty, cold start, training and export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from vtg_data.cli import app


@pytest.fixture(scope="module")
def mixed(synthetic_root, tmp_path_factory):
    """``<root>/normalized/mixed/all.parquet``: the synthetic rows twice, once as a second source
    whose videos live in ``<root>/videos/other/``."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(synthetic_root / "videos", root / "videos")
    shutil.copytree(root / "videos" / "synthetic", root / "videos" / "other")
    table = pl.read_parquet(synthetic_root / "normalized/synthetic/train.parquet")
    other = table.with_columns(pl.lit("other").alias("source"), ("other/" + pl.col("uid")).alias("uid"))
    (root / "tables").mkdir()
    pl.concat([table, other]).write_parquet(root / "tables" / "mixed.parquet")
    return root


def test_every_stage_finds_both_sources_videos(mixed, tiny_model, tmp_path):
    table, videos = str(mixed / "tables/mixed.parquet"), str(mixed / "videos")
    frames = ["--fps", "1", "--max-frames", "4", "--min-pixels", str(28 * 28), "--max-pixels", str(56 * 56)]
    runner = CliRunner()
    evaluated = runner.invoke(app, ["eval", "--model", str(tiny_model), "--data", table, "--video-root", videos,
                                    "--out", str(tmp_path / "eval"), "--max-tokens", "4", "--bootstrap", "0", *frames])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    predictions = [
        json.loads(line) for line in (tmp_path / "eval/predictions.jsonl").read_text().splitlines()
    ]
    assert {p["uid"].split("/")[0] for p in predictions} == {"synthetic", "other"}
    assert all(p["status"] == "ok" for p in predictions)

    scored = runner.invoke(app, ["score-difficulty", "--data", table, "--video-root", videos, "--model", str(tiny_model),
                                 "-k", "2", "--max-tokens", "4", "--shards", "1", "--out", str(tmp_path / "scores"), *frames])  # fmt: skip
    assert scored.exit_code == 0, scored.output
    manifest = json.loads((tmp_path / "scores/manifest.json").read_text())
    assert manifest["counts"]["failed"] == 0 and manifest["counts"]["scored"] == len(predictions)

    trained = runner.invoke(app, ["train", "sft", "--model", str(tiny_model), "--data", table, "--video-root", videos,
                                  "--out", str(tmp_path / "sft"), "--steps", "1", "--batch-size", "4", "--num-workers", "0",
                                  "--prompt", "compact", *frames])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert json.loads((tmp_path / "sft/metrics.jsonl").read_text().splitlines()[0])["skipped"] == 0

    exported = runner.invoke(app, ["export", "--format", "easyr1", "--input", table, "--video-root", videos,
                                   "--out", str(tmp_path / "mixed.jsonl")])  # fmt: skip
    assert exported.exit_code == 0, exported.output
    records = [json.loads(line) for line in (tmp_path / "mixed.jsonl").read_text().splitlines()]
    assert {r["videos"][0].split("/videos/")[1].split("/")[0] for r in records} == {"synthetic", "other"}
    assert all(Path(r["videos"][0]).is_file() for r in records)
