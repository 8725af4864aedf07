"""`vtg-data download` end to end: loopback server, local folders, bad input, videos."""

import io
import json
import tarfile
import zipfile

import polars as pl
import pytest
from typer.testing import CliRunner
from videos import lavfi_video

from vtg_data.cli import app
from vtg_data.corpora import Remote, VideoSource, activitynet_captions, tacos
from vtg_data.corpora.tacos import TACoS

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.corpora
def test_download_from_the_official_location_over_http(shared_corpora, file_server, tmp_path, monkeypatch):
    file_server.files["/tacos/test.json"] = (shared_corpora / "tacos" / "test.json").read_bytes()
    monkeypatch.setattr(tacos, "_2DTAN", f"{file_server.url}/tacos")
    result = run("download", "tacos", "--root", tmp_path, "--split", "test")
    assert result.exit_code == 0, result.output
    assert "4001" in result.output
    assert pl.read_parquet(tmp_path / "normalized/tacos/test.parquet").height == 4001
    manifest = json.loads((tmp_path / "normalized/tacos/manifest.json").read_text())
    assert manifest["splits"]["test"]["inputs"][0]["sha256"] == tacos.KNOWN_SHA256["test.json"]
    again = run("download", "tacos", "--root", tmp_path, "--split", "test")
    assert "up to date" in again.output
    assert len(file_server.requests) == 1  # nothing fetched the second time


@pytest.mark.corpora
def test_member_of_an_official_archive_is_extracted(shared_corpora, file_server, tmp_path, monkeypatch):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "captions/val_2.json", (shared_corpora / "activitynet_captions/val_2.json").read_bytes()
        )
        archive.writestr("captions/readme.txt", "x")
    file_server.files["/densevid/captions.zip"] = buffer.getvalue()
    monkeypatch.setattr(activitynet_captions, "_STANFORD", f"{file_server.url}/densevid/captions.zip")
    result = run("download", "activitynet_captions", "--root", tmp_path, "--split", "val_2")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw/activitynet_captions/val_2.json").is_file()
    assert pl.read_parquet(tmp_path / "normalized/activitynet_captions/val_2.parquet").height == 17031


def test_hf_mirror_uses_the_endpoint_and_token_without_printing_it(file_server, tmp_path, monkeypatch):
    data = {"v_a": {"duration": 10.0, "timestamps": [[1, 2]], "sentences": ["x."]}}
    file_server.files["/datasets/yeliudev/VideoMind-Dataset/resolve/main/activitynet_captions/train.json"] = (
        json.dumps(data).encode()
    )
    monkeypatch.setattr(activitynet_captions, "_STANFORD", f"{file_server.url}/gone/captions.zip")
    monkeypatch.setattr(activitynet_captions, "_2DTAN", f"{file_server.url}/gone")
    monkeypatch.setenv("HF_ENDPOINT", file_server.url)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    result = run("download", "activitynet_captions", "--root", tmp_path, "--split", "train")
    assert result.exit_code == 0, result.output
    auth = [a for path, _, a in file_server.requests if path.startswith("/datasets/")]
    assert auth == ["Bearer hf_secret_value"]
    assert "hf_secret_value" not in result.output
    assert [a for path, _, a in file_server.requests if path.startswith("/gone")] == [None, None]


def test_unreachable_file_lists_every_location_tried(file_server, tmp_path, monkeypatch):
    monkeypatch.setattr(tacos, "_2DTAN", f"{file_server.url}/nothing")
    result = run("download", "tacos", "--root", tmp_path, "--split", "val")
    assert result.exit_code != 0
    assert "could not obtain val.json" in result.output and "HTTP 404" in result.output


def test_unknown_corpus_and_split_fail_clearly(tmp_path):
    result = run("download", "charades", "--root", tmp_path)
    assert result.exit_code != 0 and "unknown corpus 'charades'" in result.output
    result = run("download", "tacos", "--root", tmp_path, "--split", "val_2")
    assert result.exit_code != 0 and "no split 'val_2'" in result.output


def test_missing_file_in_local_folder(tmp_path):
    (tmp_path / "local").mkdir()
    result = run(
        "download", "qvhighlights", "--root", tmp_path / "r", "--split", "val", "--from", tmp_path / "local"
    )
    assert result.exit_code != 0
    assert "highlight_val_release.jsonl is not in" in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            '{"qid": 1, "query": "q", "duration": 150, "vid": "a_0.0_150.0", "relevant_windows": [[2, 4]]}\n{"qid": 2,',
            "highlight_val_release.jsonl: record line 2: malformed JSON",
        ),
        (
            '{"qid": 1, "query": "q", "duration": 150, "vid": "a_0.0_150.0", "relevant_windows": [[2, NaN]]}',
            "record line 1: window end is not finite",
        ),
        (
            '{"qid": 1, "query": "q", "vid": "a_0.0_150.0", "relevant_windows": [[2, 4]]}',
            "record line 1: missing field 'duration'",
        ),
        ("", "file is empty"),
    ],
)
def test_bad_input_exits_non_zero_and_leaves_no_output(tmp_path, content, expected):
    local = tmp_path / "local"
    local.mkdir()
    (local / "highlight_val_release.jsonl").write_text(content)
    result = run(
        "download", "qvhighlights", "--root", tmp_path / "r", "--split", "val", "--from", local, "--no-verify"
    )
    assert result.exit_code != 0
    assert expected in " ".join(result.output.split())
    assert not (tmp_path / "r/normalized/qvhighlights/val.parquet").exists()
    assert not list((tmp_path / "r").rglob("*.tmp"))


def test_strict_turns_repairs_into_errors(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    line = {"qid": 1, "query": "q", "duration": 10, "vid": "a_0.0_10.0", "relevant_windows": [[2, 12]]}
    (local / "highlight_val_release.jsonl").write_text(json.dumps(line))
    args = (
        "download",
        "qvhighlights",
        "--root",
        tmp_path / "r",
        "--split",
        "val",
        "--from",
        local,
        "--no-verify",
    )
    assert run(*args).exit_code == 0
    strict = run(*args, "--strict")
    assert strict.exit_code != 0 and "end_clamped" in strict.output


def test_videos_are_downloaded_extracted_and_probed(file_server, tmp_path, monkeypatch):
    video = tmp_path / "s30-d52-cam-002.avi"
    lavfi_video(video, "testsrc2=s=64x48:r=10:d=3", encode=("-c:v", "mpeg4"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(video, arcname="videos/s30-d52-cam-002.avi")
        broken = tarfile.TarInfo("videos/s31-d53-cam-002.avi")
        broken.size = 100
        archive.addfile(broken, io.BytesIO(b"not a video" * 10))
    file_server.files["/mpii/videos.tar.gz"] = buffer.getvalue()
    monkeypatch.setattr(
        TACoS,
        "video_sources",
        (VideoSource("test videos", (Remote(f"{file_server.url}/mpii/videos.tar.gz"),)),),
    )
    local = tmp_path / "local"
    local.mkdir()
    annotations = {
        "s30-d52.avi": {
            "num_frames": 88,
            "fps": 29.4,
            "timestamps": [[0, 60]],
            "sentences": ["He takes a knife"],
        },
        "s31-d53.avi": {
            "num_frames": 88,
            "fps": 29.4,
            "timestamps": [[0, 60]],
            "sentences": ["He takes a pan"],
        },
        "s32-d54.avi": {
            "num_frames": 88,
            "fps": 29.4,
            "timestamps": [[0, 60]],
            "sentences": ["He takes a cup"],
        },
    }
    (local / "train.json").write_text(json.dumps(annotations))
    result = run(
        "download", "tacos", "--root", tmp_path / "r", "--split", "train", "--from", local, "--videos"
    )
    assert result.exit_code == 0, result.output
    videos = pl.read_parquet(tmp_path / "r/normalized/tacos/videos.parquet").sort("video_id")
    assert videos["status"].to_list() == ["ok", "corrupt", "missing"]
    assert videos["video_path"].to_list()[0] == "videos/s30-d52-cam-002.avi"
    assert videos["duration_probe"][0] == pytest.approx(3.0, abs=0.15)
    rows = pl.read_parquet(tmp_path / "r/normalized/tacos/train.parquet").sort("video_id")
    assert [f for f in rows["flags"].to_list()] == [[], ["video_corrupt"], ["video_missing"]]
    assert "1" in result.output  # the summary table counts the missing and the corrupt video


def test_synthetic_download_is_deterministic_for_a_seed(tmp_path):
    for name in ("a", "b"):
        result = run(
            "download",
            "synthetic",
            "--root",
            tmp_path / name,
            "--n-videos",
            3,
            "--seed",
            5,
            "--max-duration",
            12,
        )
        assert result.exit_code == 0, result.output
    for table in ("train.parquet", "test.parquet"):
        a = (tmp_path / "a/normalized/synthetic" / table).read_bytes()
        assert a == (tmp_path / "b/normalized/synthetic" / table).read_bytes()


def test_synthetic_single_event_layout_is_reachable_from_the_cli(tmp_path):
    result = run("download", "synthetic", "--root", tmp_path, "--n-videos", 3, "--max-duration", 10,
                 "--layout", "single_event")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pl.concat([pl.read_parquet(p) for p in (tmp_path / "normalized/synthetic").glob("*.parquet")
                      if p.name != "videos.parquet"])  # fmt: skip
    assert rows.group_by("video_id").len()["len"].to_list() == [1] * rows["video_id"].n_unique()
    refused = run("download", "synthetic", "--root", tmp_path / "x", "--layout", "diagonal")
    assert refused.exit_code != 0 and "layout must be" in refused.output


def test_didemo_videos_come_one_by_one_from_the_yfcc_bucket(file_server, tmp_path, monkeypatch):
    from vtg_data.corpora import didemo

    video = tmp_path / "v.mp4"
    lavfi_video(video, "color=c=blue:s=64x48:r=10:d=12")
    digest = "abcdef0123456789"
    file_server.files[f"/mc/abc/def/{digest}.mp4"] = video.read_bytes()
    monkeypatch.setattr(didemo, "_AWS", f"{file_server.url}/mc")
    records = [
        {
            "annotation_id": 1,
            "description": "a",
            "video": "35034348999@N01_6060447507_dc1a90b8ef.mov",
            "num_segments": 6,
            "times": [[2, 2]] * 4,
            "dl_link": "",
        },
        {
            "annotation_id": 2,
            "description": "b",
            "video": "1@N0_999_ab.",
            "num_segments": 6,
            "times": [[0, 0]] * 4,
            "dl_link": "",
        },
    ]
    local = tmp_path / "local"
    local.mkdir()
    (local / "val_data.json").write_text(json.dumps(records))
    (local / "yfcc100m_hash.txt").write_text(f"6060447507\t{digest}\n")  # beside the annotations
    result = run(
        "download",
        "didemo",
        "--root",
        tmp_path / "r",
        "--split",
        "val",
        "--videos",
        "--no-verify",
        "--from",
        local,
    )
    assert result.exit_code == 0, result.output
    assert "1 video(s) have no known download URL" in " ".join(result.output.split())
    assert (tmp_path / "r/videos/didemo/35034348999@N01_6060447507_dc1a90b8ef.mp4").is_file()
    rows = pl.read_parquet(tmp_path / "r/normalized/didemo/val.parquet").sort("uid")
    first, second = rows.row(0, named=True), rows.row(1, named=True)
    assert first["duration_source"] == "probe" and first["duration"] == pytest.approx(12.0, abs=0.1)
    assert first["windows"] == [[10.0, 12.0]] and "video_missing" not in first["flags"]
    assert "video_missing" in second["flags"] and second["duration_source"] == "num_segments"
