"""Every real split in ../shared/corpora normalizes to the figures its raw file itself gives.

The expected rows are computed here from the raw files with plain ``json``/``csv`` reading and
the documented repair rule (swap an inverted pair, clamp to [0, duration], flag a zero length),
never through an adapter, so a parsing mistake in an adapter cannot hide behind its own reading
of the file. Each split is compared on its row count, its has_gt count, the multiset of (video,
verbatim query, windows) and the counts of every repair flag.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from vtg_data.stages.download import DownloadConfig, download

pytestmark = pytest.mark.corpora

REPAIRS = ("end_clamped", "start_clamped", "inverted_swapped", "zero_length")


def repaired(start: float, end: float, duration: float) -> tuple[list[float], set[str]]:
    flags = set()
    if start > end:
        start, end, flags = end, start, flags | {"inverted_swapped"}
    if start < 0:
        start, flags = 0.0, flags | {"start_clamped"}
    if end > duration:
        end, flags = duration, flags | {"end_clamped"}
    if start > duration:
        start, flags = duration, flags | {"start_clamped"}
    if start == end:
        flags.add("zero_length")
    return [start, end], flags


def expected_row(video_id, query_raw, raw_windows, duration, has_gt=True, video_path=None) -> dict:
    windows, flags = [], set()
    for start, end in raw_windows:
        window, window_flags = repaired(float(start), float(end), float(duration))
        windows.append(window)
        flags |= window_flags
    return {"video_id": video_id, "query_raw": query_raw, "windows": sorted(windows), "has_gt": has_gt,
            "flags": flags, "video_path": video_path}  # fmt: skip


def charades_test(folder: Path) -> list[dict]:
    with (folder / "Charades_v1_test.csv").open(newline="") as handle:
        lengths = {r["id"]: float(r["length"]) for r in csv.DictReader(handle)}
    rows = []
    for line in (folder / "charades_sta_test.txt").read_text().splitlines():
        if line.strip():
            head, sentence = line.split("##", 1)
            vid, start, end = head.split()
            rows.append(expected_row(vid, sentence, [(float(start), float(end))], lengths[vid]))
    return rows


def activitynet_val_2(folder: Path) -> list[dict]:
    data = json.loads((folder / "val_2.json").read_text())
    return [expected_row(vid, sentence, [window], v["duration"])
            for vid, v in data.items() for window, sentence in zip(v["timestamps"], v["sentences"], strict=True)]  # fmt: skip


def tacos_test(folder: Path) -> list[dict]:
    data = json.loads((folder / "test.json").read_text())
    rows = []
    for key, v in data.items():
        fps = v["fps"]
        for (a, b), sentence in zip(v["timestamps"], v["sentences"], strict=True):
            rows.append(
                expected_row(key.removesuffix(".avi"), sentence, [(a / fps, b / fps)], v["num_frames"] / fps)
            )
    return rows


def qvhighlights_val(folder: Path) -> list[dict]:
    records = [
        json.loads(line) for line in (folder / "highlight_val_release.jsonl").read_text().splitlines() if line
    ]
    return [expected_row(r["vid"], r["query"], r["relevant_windows"], r["duration"]) for r in records]


def didemo_val(folder: Path) -> list[dict]:
    rows = []
    for item in json.loads((folder / "val_data.json").read_text()):
        chunks = [tuple(t) for t in item["times"]]
        counts = Counter(chunks)
        a, b = next(c for c in chunks if counts[c] == max(counts.values()))
        duration = 5.0 * item["num_segments"]
        row = expected_row(
            item["video"], item["description"], [(5 * a, min(5 * (b + 1), duration))], duration
        )
        rows.append(row)
    return rows


def hirest_val(folder: Path) -> list[dict]:
    rows = []
    for query, videos in json.loads((folder / "all_data_val.json").read_text()).items():
        for key, v in videos.items():
            vid = key.removesuffix(".mp4")
            if not v["clip"]:
                rows.append(expected_row(vid, query, [], v["v_duration"], has_gt=False))
                continue
            rows.append(expected_row(vid, query, [v["bounds"]], v["v_duration"]))
            rows += [
                expected_row(vid, s["heading"], [s["absolute_bounds"]], v["v_duration"]) for s in v["steps"]
            ]
    return rows


def nextgqa_val(folder: Path) -> list[dict]:
    spans = json.loads((folder / "gsub_val.json").read_text())
    paths = json.loads((folder / "map_vid_vidorID.json").read_text())
    rows = []
    with (folder / "val.csv").open(newline="") as handle:
        for r in csv.DictReader(handle):
            entry = spans[r["video_id"]]
            windows = entry["location"].get(r["qid"]) or []
            rows.append(expected_row(r["video_id"], r["question"], windows, entry["duration"], has_gt=bool(windows),
                                     video_path=f"{paths[r['video_id']]}.mp4"))  # fmt: skip
    return rows


def rextime_val_json(folder: Path) -> list[dict]:
    return [expected_row(r["vid"], r["question"], [r["span"]], r["duration"])
            for r in json.loads((folder / "rextime_val.json").read_text())]  # fmt: skip


def rextime_val_jsonl(folder: Path) -> list[dict]:
    records = [json.loads(line) for line in (folder / "rextime_val.json").read_text().splitlines() if line]
    return [expected_row(r["vid"], r["query"], r["relevant_windows"], r["duration"]) for r in records]


def tvgbench_test(folder: Path) -> list[dict]:
    rows = []
    for item in json.loads((folder / "tvgbench.json").read_text()):
        start, end = (float(x) for x in item["answer"].split("-"))
        rows.append(expected_row(Path(item["path"]).stem, item["question"], [(start, end)], item["duration"]))
    return rows


# corpus, split, raw reader, files to copy (None: the whole corpus folder), verify checksums
CASES = [
    ("charades_sta", "test", charades_test, None, True),
    ("activitynet_captions", "val_2", activitynet_val_2, None, True),
    ("tacos", "test", tacos_test, None, True),
    ("qvhighlights", "val", qvhighlights_val, None, True),
    ("didemo", "val", didemo_val, None, True),
    ("hirest", "val", hirest_val, None, True),
    ("nextgqa", "val", nextgqa_val, None, True),
    ("rextime", "val", rextime_val_json, {"rextime_val.json": "rextime_val.json"}, True),
    # the GitHub JSONL the adapter fetches first, saved under the HF file's name
    ("rextime", "val", rextime_val_jsonl, {"rextime_val.jsonl": "rextime_val.json"}, True),
    # the shared copy lacks the 168 Ego4D-NLQ items: a pinned copy of its own
    ("tvgbench", "test", tvgbench_test, None, True),
]
IDS = [f"{c[0]}-{c[1]}-{c[2].__name__}" for c in CASES]


def _folder(shared: Path, corpus: str, files: dict[str, str] | None, tmp: Path) -> Path:
    if files is None:
        return shared / corpus
    tmp.mkdir(parents=True, exist_ok=True)
    for source, name in files.items():
        shutil.copyfile(shared / corpus / source, tmp / name)
    return tmp


@pytest.mark.parametrize(("corpus", "split", "reader", "files", "verify"), CASES, ids=IDS)
def test_split_matches_the_raw_file(shared_corpora, tmp_path, corpus, split, reader, files, verify):
    folder = _folder(shared_corpora, corpus, files, tmp_path / "from")
    result = download(
        DownloadConfig(corpus, tmp_path / "root", splits=(split,), from_dir=folder, verify=verify)
    )
    assert not result.errors, result.errors
    table = pl.read_parquet(tmp_path / "root" / "normalized" / corpus / f"{split}.parquet")
    expected = reader(folder)

    assert table.height == len(expected)
    assert table["uid"].n_unique() == len(expected)
    assert int(table["has_gt"].sum()) == sum(r["has_gt"] for r in expected)

    def key(video_id, query_raw, windows, has_gt):
        return (video_id, query_raw, tuple(tuple(round(x, 6) for x in w) for w in windows), has_gt)

    got = Counter(
        key(r["video_id"], r["query_raw"], r["windows"], r["has_gt"]) for r in table.iter_rows(named=True)
    )
    want = Counter(key(r["video_id"], r["query_raw"], r["windows"], r["has_gt"]) for r in expected)
    assert got == want, (
        f"only in the table: {list((got - want).items())[:3]}; only in the file: {list((want - got).items())[:3]}"
    )

    flags = Counter(f for fs in table["flags"].to_list() for f in fs)
    want_flags = Counter(f for r in expected for f in r["flags"])
    assert {f: flags.get(f, 0) for f in REPAIRS} == {f: want_flags.get(f, 0) for f in REPAIRS}

    paths = [r["video_path"] for r in expected if r["video_path"]]
    if paths:  # the path the annotation gives stays, videos or not
        assert sorted(table["video_path"].to_list()) == sorted(paths)


def test_every_shared_corpus_is_covered(shared_corpora):
    covered = {corpus for corpus, *_ in CASES}
    present = {p.name for p in shared_corpora.iterdir() if p.is_dir()}
    assert present <= covered, f"real files with no figures test: {sorted(present - covered)}"


def test_an_edited_copy_of_a_pinned_file_is_refused(shared_corpora, tmp_path):
    edited = tmp_path / "edited"
    edited.mkdir()
    text = (shared_corpora / "nextgqa" / "gsub_val.json").read_text()
    (edited / "gsub_val.json").write_text(text.replace('"duration": 34', '"duration": 35', 1))
    for name in ("val.csv", "map_vid_vidorID.json"):
        shutil.copyfile(shared_corpora / "nextgqa" / name, edited / name)
    result = download(DownloadConfig("nextgqa", tmp_path / "root", splits=("val",), from_dir=edited))
    assert "checksum mismatch" in result.errors[0] and "--no-verify" in result.errors[0]
    accepted = download(
        DownloadConfig("nextgqa", tmp_path / "root", splits=("val",), from_dir=edited, verify=False)
    )
    assert not accepted.errors
