"""Failed rows grouped by reason, and a stage where no row succeeded exits non-zero, its outputs kept."""

import json

import pytest
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.stages.failures import failure_lines, group_failures

pytest.importorskip("transformers")
FRAMES = ["--fps", "1", "--max-frames", "8", "--min-pixels", "784", "--max-pixels", str(56 * 56)]


def test_messages_that_differ_only_by_row_are_one_reason():
    errors = {
        "a/train/1": "cannot open /data/videos/a/1.mp4: No such file or directory",
        "a/train/2": "cannot open /data/videos/a/2.mp4: No such file or directory",
        "a/train/3": "HTTP 400: Per-request mm_processor_kwargs are disabled by default",
        "a/train/4": "a/train/4: answer cut at 2048 tokens",
    }
    groups = group_failures(errors)
    assert [(g["count"], g["reason"]) for g in groups] == [
        (2, "cannot open <file>: No such file or directory"),
        (1, "HTTP 400: Per-request mm_processor_kwargs are disabled by default"),
        (1, "<uid>: answer cut at 2048 tokens"),
    ]
    assert groups[0]["first_uid"] == "a/train/1" and "/data/videos/a/1.mp4" in groups[0]["first_message"]
    lines = failure_lines(groups, limit=2)
    assert lines[0] == "2 x cannot open <file>: No such file or directory"
    assert lines[-1] == "... and 1 more reasons (manifest)"
    assert group_failures({}) == []


@pytest.mark.parametrize("stage", ["eval", "score-difficulty", "build coldstart"])
def test_a_stage_where_every_row_failed_exits_non_zero_with_the_reasons(
    stage, synthetic_root, tiny_model, tmp_path
):
    """Every video missing (another --video-root): each stage writes its run folder, says why the
    rows failed (one reason, its count, the first message) and exits 1."""
    table = str(synthetic_root / "normalized/synthetic/test.parquet")
    empty = tmp_path / "no-videos"
    empty.mkdir()
    out = tmp_path / "run"
    args = {
        "eval": ["eval", "--model", str(tiny_model), "--data", table, "--out", str(out), "--max-tokens", "4"],
        "score-difficulty": ["score-difficulty", "--model", str(tiny_model), "--data", table, "--out", str(out),
                             "-k", "2", "--max-tokens", "4"],
        "build coldstart": ["build", "coldstart", "--data", table, "--out", str(out), "--teacher-model",
                            str(tiny_model), "--k", "1", "--max-tokens", "4"],
    }[stage]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--video-root", str(empty), *FRAMES])
    output = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "failed, by reason" in output and "succeeded" in output
    record = json.loads((out / ("metrics.json" if stage == "eval" else "manifest.json")).read_text())
    groups = record["card"]["failures"] if stage == "eval" else record["failures"]
    rows = sum(g["count"] for g in groups)
    assert rows > 0 and len(groups) == 1  # one reason: the missing folder, whatever the file
    assert f"{rows} x " in output and groups[0]["first_uid"] in output
