import json

from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.stats import compute_stats, video_facts


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


def test_stats_and_download_say_what_the_video_files_are(synthetic_root, tmp_path):
    """Codecs, containers, rotation, start offset and variable rate per corpus, from videos.parquet."""
    from zoo import make

    (facts,) = compute_stats(synthetic_root / "normalized/synthetic")["video_files"]
    assert facts["corpus"] == "synthetic" and facts["status"] == {"ok": 4}
    assert facts["codecs"] == {"h264": 4} and list(facts["containers"]) == ["mov,mp4,m4a,3gp,3g2,mj2"]
    assert (facts["rotated"], facts["offset_start"], facts["variable_rate"]) == (0, 0, 0)
    # a corpus whose files are a phone video, a re-muxed download and a variable-rate one: probed as
    # the download stage probes them, summed as stats sums them
    import pyarrow as pa

    from vtg_data.schema import VIDEO_SCHEMA, write_table_atomic
    from vtg_data.video.probe import probe_video

    records = []
    for kind in ("rotated_90", "offset_start", "vfr", "vp9_webm"):
        probe = probe_video(make(kind, tmp_path)).as_dict()
        records.append({"video_id": kind, "video_path": kind, "status": probe.pop("status"),
                        "duration_annotation": None, "duration_probe": probe.pop("duration"), "sha256": None, **probe})  # fmt: skip
    folder = tmp_path / "normalized" / "phones"
    write_table_atomic(pa.Table.from_pylist(records, schema=VIDEO_SCHEMA), folder / "videos.parquet")
    (facts,) = video_facts([folder])
    assert (facts["rotated"], facts["offset_start"], facts["variable_rate"]) == (1, 1, 1)
    assert facts["codecs"] == {"h264": 3, "vp9": 1} and facts["status"] == {"ok": 4}
    printed = CliRunner().invoke(
        app, ["download", "synthetic", "--root", str(tmp_path / "synthetic"), "--n-videos", "2"]
    )
    assert printed.exit_code == 0 and "video files (videos.parquet)" in printed.output
