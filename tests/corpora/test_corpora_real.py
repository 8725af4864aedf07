"""The real public annotation files normalize to exactly the known counts, quirks flagged."""

import shutil

import polars as pl
import pytest
from videos import lavfi_video

from vtg_data.stages.download import DownloadConfig, download

pytestmark = pytest.mark.corpora

# corpus, split, queries, videos, flags that must be present with these exact counts
CASES = [
    ("charades_sta", "test", 3720, 1334, {"end_clamped": 562}),
    (
        "activitynet_captions",
        "val_2",
        17031,
        4885,
        {"end_clamped": 111, "inverted_swapped": 0, "zero_length": 0},
    ),
    ("tacos", "test", 4001, 25, {"end_clamped": 5, "duplicate": 567}),
    ("qvhighlights", "val", 1550, 1519, {"multi_window": 530, "end_clamped": 0}),
    ("didemo", "val", 4180, 1094, {"annotators_7": 15, "video_name_bare_dot": 53, "multi_annotator": 4180}),
]


@pytest.fixture(scope="module")
def normalized(shared_corpora, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    results = {}
    for corpus, split, *_ in CASES:
        result = download(DownloadConfig(corpus, root, splits=(split,), from_dir=shared_corpora / corpus))
        assert not result.errors, result.errors
        results[corpus] = pl.read_parquet(root / "normalized" / corpus / f"{split}.parquet")
    return root, results


@pytest.mark.parametrize(("corpus", "split", "queries", "videos", "flags"), CASES)
def test_counts_and_flags(normalized, corpus, split, queries, videos, flags):
    _, tables = normalized
    table = tables[corpus]
    assert table.height == queries
    assert table["video_id"].n_unique() == videos
    assert table["uid"].n_unique() == queries
    counts = table.select(pl.col("flags").explode()).drop_nulls().group_by("flags").len()
    got = dict(zip(counts["flags"].to_list(), counts["len"].to_list(), strict=True))
    for flag, expected in flags.items():
        assert got.get(flag, 0) == expected, flag


@pytest.mark.parametrize(("corpus", "split", "queries", "videos", "flags"), CASES)
def test_windows_are_valid_seconds_inside_the_media(normalized, corpus, split, queries, videos, flags):
    table = normalized[1][corpus].filter(pl.col("has_gt"))
    windows = (
        table.select("duration", "windows")
        .explode("windows")
        .select(
            "duration", pl.col("windows").list.get(0).alias("s"), pl.col("windows").list.get(1).alias("e")
        )
    )
    assert (
        windows.filter(
            (pl.col("s") < 0) | (pl.col("s") > pl.col("e")) | (pl.col("e") > pl.col("duration"))
        ).height
        == 0
    )


def test_every_video_is_recorded_missing_without_files(normalized):
    root, tables = normalized
    videos = pl.read_parquet(root / "normalized" / "charades_sta" / "videos.parquet")
    assert videos.height == 1334
    assert set(videos["status"]) == {"missing"}
    assert tables["charades_sta"].filter(~pl.col("flags").list.contains("video_missing")).height == 0


def test_known_quirk_records(normalized):
    _, t = normalized
    first = t["charades_sta"].filter(pl.col("uid") == "charades_sta/test/L00001").row(0, named=True)
    assert (first["video_id"], first["windows"], first["duration"]) == ("3MSZA", [[24.3, 30.4]], 30.96)
    assert first["query"] == "person turn a light on." and first["duration_source"] == "csv"
    anet = t["activitynet_captions"].filter(pl.col("video_id") == "v_EQMDnhIKU4w")
    clamped = anet.filter(pl.col("flags").list.contains("end_clamped")).row(0, named=True)
    assert clamped["windows_raw"] == [[103.06, 113.26]]
    assert clamped["windows"] == [[103.06, clamped["duration"]]] and clamped["duration"] < 113.26
    qvh = t["qvhighlights"].filter(pl.col("uid") == "qvhighlights/val/7920")
    if qvh.height:  # the second example of the reference, if it is in val
        row = qvh.row(0, named=True)
        assert row["windows"] == [[134.0, 138.0], [140.0, 150.0]]
    tacos = t["tacos"].row(0, named=True)
    assert tacos["raw_unit"] == "frame" and tacos["fps_native"] == 29.4
    assert tacos["windows"][0][0] == pytest.approx(tacos["windows_raw"][0][0] / 29.4)
    didemo = t["didemo"].filter(pl.col("uid") == "didemo/val/49152").row(0, named=True)
    assert didemo["windows_raw"] == [[1, 1], [1, 1], [1, 1], [0, 0]]
    assert didemo["windows"] == [[5.0, 10.0]]  # the mode of the four annotators
    assert didemo["windows_alt"] == [[[5.0, 10.0]], [[5.0, 10.0]], [[5.0, 10.0]], [[0.0, 5.0]]]
    assert "consolidated=mode" in didemo["flags"]


def test_qvhighlights_keeps_saliency_and_clip_offsets(normalized):
    import json

    row = normalized[1]["qvhighlights"].row(0, named=True)
    extra = json.loads(row["extra"])
    assert len(extra["saliency_scores"]) == len(extra["relevant_clip_ids"]) > 0
    parent, start, end = row["video_id"].rsplit("_", 2)
    assert (row["parent_video_id"], row["clip_start"], row["clip_end"]) == (parent, float(start), float(end))


def test_output_is_byte_identical_across_runs(shared_corpora, tmp_path):
    outputs = []
    for run in ("a", "b"):
        root = tmp_path / run
        download(
            DownloadConfig(
                "activitynet_captions",
                root,
                splits=("val_2",),
                from_dir=shared_corpora / "activitynet_captions",
            )
        )
        outputs.append((root / "normalized/activitynet_captions/val_2.parquet").read_bytes())
    assert outputs[0] == outputs[1]


def test_rerun_with_nothing_changed_does_no_work(shared_corpora, tmp_path):
    cfg = DownloadConfig("tacos", tmp_path, splits=("test",), from_dir=shared_corpora / "tacos")
    first = download(cfg)
    table = tmp_path / "normalized/tacos/test.parquet"
    stamp = table.stat().st_mtime_ns
    second = download(cfg)
    assert second.splits[0].up_to_date and not first.splits[0].up_to_date
    assert second.splits[0].queries == 4001
    assert table.stat().st_mtime_ns == stamp


def test_checksum_mismatch_from_local_folder_is_rejected(shared_corpora, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    data = (shared_corpora / "tacos" / "test.json").read_bytes()
    (local / "test.json").write_bytes(data.replace(b"29.4", b"29.5", 1))
    result = download(DownloadConfig("tacos", tmp_path / "root", splits=("test",), from_dir=local))
    assert "checksum mismatch" in result.errors[0]
    assert not (tmp_path / "root/normalized/tacos/test.parquet").exists()
    accepted = download(
        DownloadConfig("tacos", tmp_path / "root", splits=("test",), from_dir=local, verify=False)
    )
    assert not accepted.errors


def test_didemo_probe_duration_replaces_the_segment_estimate(shared_corpora, tmp_path):
    """A downloaded video's probed length replaces num_segments * 5 and re-clamps the windows."""
    import json

    records = json.loads((shared_corpora / "didemo" / "val_data.json").read_text())
    record = next(r for r in records if r["num_segments"] == 6 and any(t[1] == 5 for t in r["times"]))
    local = tmp_path / "local"
    local.mkdir()
    (local / "val_data.json").write_text(json.dumps([record]))
    videos = tmp_path / "root" / "videos" / "didemo"
    videos.mkdir(parents=True)
    lavfi_video(videos / record["video"], "color=c=red:s=64x48:r=10:d=27",
                encode=("-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4"))  # fmt: skip
    download(DownloadConfig("didemo", tmp_path / "root", splits=("val",), from_dir=local, verify=False))
    row = pl.read_parquet(tmp_path / "root/normalized/didemo/val.parquet").row(0, named=True)
    assert row["duration_source"] == "probe"
    assert row["duration"] == pytest.approx(27.0, abs=0.05)
    assert max(w[0][1] for w in row["windows_alt"]) == pytest.approx(27.0, abs=0.05)
    assert "duration_estimated" not in row["flags"] and "video_missing" not in row["flags"]
    shutil.rmtree(tmp_path / "root")
