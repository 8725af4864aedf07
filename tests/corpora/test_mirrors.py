"""``vtg-data download --mirror``: files from a Hugging Face mirror at a pinned commit, split video
archives joined and extracted, an interrupted archive part resumed; against a loopback Hub."""

import io
import json
import tarfile

import polars as pl
import pytest
from typer.testing import CliRunner

pytest.importorskip("huggingface_hub")
from fakehub import FakeHub  # noqa: E402
from videos import timecode_video  # noqa: E402

from vtg_data.cli import app  # noqa: E402
from vtg_data.fetch.mirrors import part_pattern  # noqa: E402

REPO = "yeliudev/VideoMind-Dataset"


def hirest_split(duration: float, bounds: list[int]) -> bytes:
    return json.dumps({"How to tie a ribbon": {"CAB-4KfX8x0.mp4": {
        "relevant": True, "clip": True, "v_duration": duration, "bounds": bounds,
        "steps": [{"index": 0, "heading": "Flip and twist ribbon", "absolute_bounds": bounds}]}}}).encode()  # fmt: skip


@pytest.fixture()
def hub_client(offline_hub_client, monkeypatch):
    """The loopback hub, and no waiting between the downloader's retries."""
    monkeypatch.setattr("vtg_data.fetch.mirrors.RETRY_BACKOFF", 0.0)


def tar_parts(tmp_path, video, n_parts=2) -> list[bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(video, arcname=f"videos/{video.name}")
    data = buffer.getvalue()
    step = len(data) // n_parts + 1
    return [data[i : i + step] for i in range(0, len(data), step)]


def test_part_patterns_find_every_part():
    assert part_pattern("hirest/videos.tar.gz.00").match("hirest/videos.tar.gz.11")
    assert not part_pattern("hirest/videos.tar.gz.00").match("hirest/videos.tar.gz")
    assert part_pattern("qvhighlights/chunk_1.zip").match("qvhighlights/chunk_12.zip")
    assert part_pattern("tacos/videos.tar.gz").match("tacos/videos.tar.gz")
    assert part_pattern("tacos/videos.tar.gz").match("tacos/videos.tar.gz.01")


def test_mirror_download_is_pinned_resumable_and_recorded(tmp_path, hub_client, monkeypatch):
    from huggingface_hub import CommitOperationAdd, HfApi

    video = timecode_video(tmp_path / "CAB-4KfX8x0.mp4", duration=6.0, width=64, height=32)
    parts = tar_parts(tmp_path, video)
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        api = HfApi(endpoint=hub.url, token="hf_test_token")
        api.create_repo(REPO, repo_type="dataset")
        first = api.create_commit(REPO, repo_type="dataset", commit_message="v1", operations=[
            CommitOperationAdd("hirest/all_data_train.json", hirest_split(6.0, [1, 4])),
            *[CommitOperationAdd(f"hirest/videos.tar.gz.{i:02d}", part) for i, part in enumerate(parts)],
        ]).oid  # fmt: skip
        api.create_commit(REPO, repo_type="dataset", commit_message="v2", operations=[
            CommitOperationAdd("hirest/all_data_train.json", hirest_split(6.0, [2, 5]))])  # fmt: skip
        hub.cut_downloads["hirest/videos.tar.gz.01"] = 100  # the second part breaks off after 100 bytes
        hub.fail_ranged = 5  # and the downloader's own retries fail: the run ends with a partial part

        root = tmp_path / "root"
        args = ["download", "hirest", "--root", str(root), "--split", "train", "--mirror", "videomind",
                "--revision", first, "--videos"]  # fmt: skip
        broken = CliRunner().invoke(app, args)
        assert "videos.tar.gz.01" in broken.output  # reported, and the annotations are still normalized
        assert (root / "normalized/hirest/train.parquet").is_file()
        hub.fail_ranged, hub.range_requests = 0, []
        resumed = CliRunner().invoke(app, args)
        assert resumed.exit_code == 0, resumed.output
        assert hub.range_requests == [("hirest/videos.tar.gz.01", "bytes=100-")]  # continued, not restarted

        rows = pl.read_parquet(root / "normalized/hirest/train.parquet")
        assert rows.filter(pl.col("task") == "moment_retrieval")["windows"].to_list() == [
            [[1.0, 4.0]]
        ]  # v1, not main
        videos = pl.read_parquet(root / "normalized/hirest/videos.parquet")
        assert videos["status"].to_list() == ["ok"] and videos["duration_probe"][0] == pytest.approx(
            6.0, abs=0.1
        )
        manifest = json.loads((root / "normalized/hirest/manifest.json").read_text())
        assert manifest["mirror"] == {"name": "videomind", "repo": REPO, "revision": first, "commit": first}

        latest = CliRunner().invoke(
            app, ["download", "hirest", "--root", str(root), "--split", "train", "--mirror", "videomind"]
        )
        assert latest.exit_code == 0, latest.output
        rows = pl.read_parquet(root / "normalized/hirest/train.parquet")
        assert rows.filter(pl.col("task") == "moment_retrieval")["windows"].to_list() == [[[2.0, 5.0]]]
        manifest = json.loads((root / "normalized/hirest/manifest.json").read_text())
        assert manifest["mirror"]["revision"] == "main" and manifest["mirror"]["commit"] != first

        unknown = CliRunner().invoke(
            app, ["download", "hirest", "--root", str(root), "--mirror", "videomind", "--revision", "nope"]
        )
        assert unknown.exit_code != 0 and "no revision 'nope'" in unknown.output
        absent = CliRunner().invoke(
            app, ["download", "hirest", "--root", str(root), "--split", "val", "--mirror", "videomind"]
        )
        assert "hirest/all_data_val.json is not in" in absent.output
