"""What the real public files do to the adapters, reproduced in the files' own shapes: rounding
noise below 0, withheld test truth, the second ReXTime schema, QuerYD's defaultdict pickles and
missing durations, TVG-R1's multiple-choice rows, leakage tags and raw values in messages."""

from __future__ import annotations

import collections
import json
import os
import pickle
from pathlib import Path

import polars as pl
import pytest
from videos import lavfi_video

from vtg_data.corpora import ParseContext, get_adapter
from vtg_data.schema import RecordError, ValidationFailed
from vtg_data.stages.download import DownloadConfig, download


def write(folder: Path, name: str, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def parse(corpus: str, split: str, files: dict[str, Path], **options):
    return {r.uid: r for r in get_adapter(corpus).parse(split, files, ParseContext(**options))}


# --------------------------------------------------------------------------------------------- below zero


def nextgqa_test_files(folder: Path, location: dict) -> dict[str, Path]:
    header = "video_id,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
    lines = "".join(f"4010069381,900,640,480,question {q},x,{q},CW,a,b,c,d,e\n" for q in location)
    return {
        "test.csv": write(folder, "test.csv", (header + lines).encode()),
        "gsub_test.json": write(
            folder, "gsub_test.json", {"4010069381": {"duration": 36.0, "location": location}}
        ),
        "map_vid_vidorID.json": write(folder, "map_vid_vidorID.json", {"4010069381": "1023/4010069381"}),
    }


def test_rounding_noise_below_zero_is_clamped_with_the_raw_value_kept(tmp_path):
    files = nextgqa_test_files(tmp_path, {"1": [[-0.1, 5.8]], "2": [[-0.2, 3.0], [10.0, 12.0]]})
    rows = parse("nextgqa", "test", files)
    first = rows["nextgqa/test/4010069381/1"]
    assert (
        first.windows == [[0.0, 5.8]]
        and first.windows_raw == [[-0.1, 5.8]]
        and "start_clamped" in first.flags
    )
    assert rows["nextgqa/test/4010069381/2"].windows == [[0.0, 3.0], [10.0, 12.0]]


def test_a_real_negative_time_names_file_record_and_raw_value(tmp_path):
    files = nextgqa_test_files(tmp_path, {"1": [[-3, 4.0]], "2": [[1.0, 2.0]]})
    with pytest.raises(ValidationFailed) as info:
        parse("nextgqa", "test", files)
    assert len(info.value.errors) == 1
    message = str(info.value)
    assert "test.csv: record line 2" in message and "span [-3, 4.0]: start -3 s is negative" in message


def test_strict_mode_refuses_the_clamp_and_quotes_the_file_values(tmp_path):
    files = nextgqa_test_files(tmp_path, {"1": [[-0.1, 5.8]]})
    with pytest.raises(ValidationFailed, match=r"span \[-0.1, 5.8\] needs repair \(start_clamped\).*strict"):
        parse("nextgqa", "test", files, strict=True)
    anet = write(
        tmp_path, "val_2.json", {"v_abc": {"duration": 129.96, "timestamps": [[0, 130]], "sentences": ["x"]}}
    )
    with pytest.raises(
        ValidationFailed, match=r"window \[0, 130\] needs repair \(end_clamped\) against duration 129.96"
    ):
        parse("activitynet_captions", "val_2", {"val_2.json": anet}, strict=True)


def test_queryd_window_just_below_zero_is_clamped(tmp_path):
    files = queryd_files(tmp_path, {"video-abc": [[-0.1, 108.188]]}, {"abc": 120.0}, listing="video-abc\n")
    (row,) = parse("queryd", "train", files).values()
    assert (
        row.windows == [[0.0, 108.188]]
        and row.windows_raw == [[-0.1, 108.188]]
        and "start_clamped" in row.flags
    )


# --------------------------------------------------------------------------------------------- ReXTime


def test_rextime_test_release_placeholders_have_no_ground_truth(tmp_path):
    records = [{"qid": f"anet_test{i}", "vid": "v_ZMTi498qnPc", "duration": 100.5, "question": "What happens?",
                "options": ["a", "b", "c", "d"], "answer": "", "span": [0, 0], "ans": "", "source": "anet",
                "category": "sequential"} for i in range(3)]  # fmt: skip
    path = write(tmp_path, "rextime_test_release.json", records)
    rows = parse("rextime", "test", {path.name: path})
    assert len(rows) == 3
    for row in rows.values():
        assert not row.has_gt and row.windows == [] and "gt_placeholder" in row.flags
        assert row.windows_raw == [[0.0, 0.0]] and row.benchmarks == ["rextime_test"]


def test_rextime_zero_span_with_an_answer_is_a_real_window(tmp_path):
    record = {"qid": "q1", "vid": "v_a", "duration": 10, "question": "q?", "span": [0, 0], "ans": "B"}
    path = write(tmp_path, "rextime_val.json", [record])
    (row,) = parse("rextime", "val", {path.name: path}).values()
    assert row.has_gt and row.windows == [[0.0, 0.0]] and "zero_length" in row.flags


def test_rextime_both_schemas_give_the_same_rows(tmp_path):
    hf = {"qid": "qvh_val241", "vid": "2I9-kvemtSU_510.0_660.0", "duration": 150, "question": "What before?",
          "answer": "From <s0> to <e0>, <option>.", "source": "qvhighlights_val", "category": "sequential",
          "options": ["a", "b", "c", "d"], "span": [0, 28], "ans": "A"}  # fmt: skip
    github = {"qid": "qvh_val241", "query": "What before?", "duration": 150, "vid": "2I9-kvemtSU_510.0_660.0",
              "relevant_windows": [[0, 28]], "ans": "A"}  # fmt: skip
    (a,) = parse(
        "rextime", "val", {"rextime_val.json": write(tmp_path / "hf", "rextime_val.json", [hf])}
    ).values()
    jsonl = write(tmp_path / "gh", "rextime_val.json", json.dumps(github).encode())
    (b,) = parse("rextime", "val", {"rextime_val.json": jsonl}).values()
    assert (a.uid, a.query, a.windows, a.duration, a.has_gt) == (
        b.uid,
        b.query,
        b.windows,
        b.duration,
        b.has_gt,
    )
    assert b.extra == {"ans": "A"} and a.extra["options"] == ["a", "b", "c", "d"]


# --------------------------------------------------------------------------------------------- QuerYD


def queryd_files(folder: Path, times: dict, durations: dict, listing: str) -> dict[str, Path]:
    """The VideoMind layout, pickled as the real files are: ``collections.defaultdict(list)``."""
    captions, windows = collections.defaultdict(list), collections.defaultdict(list)
    for key, spans in times.items():
        for index, span in enumerate(spans):
            captions[key].append(["caption", str(index), "of", key])
            windows[key].append(span)
    return {
        "train_list.txt": write(folder, "train_list.txt", listing.encode()),
        "raw_captions_combined_filtered-v2.pkl": write(folder, "raw_captions_combined_filtered-v2.pkl", pickle.dumps(captions)),
        "times_captions_combined_filtered-v2.pkl": write(folder, "times_captions_combined_filtered-v2.pkl", pickle.dumps(windows, protocol=2)),
        "durations.json": write(folder, "durations.json", durations),
    }  # fmt: skip


def test_queryd_defaultdict_pickles_are_read_as_plain_dicts(tmp_path):
    from vtg_data.corpora.queryd import load_plain_pickle

    data = collections.defaultdict(list, {"video-a": [[1.0, 2.0]]})
    for protocol in (2, 4, 5):
        loaded = load_plain_pickle(write(tmp_path, f"p{protocol}.pkl", pickle.dumps(data, protocol=protocol)))
        assert type(loaded) is dict and loaded == {"video-a": [[1.0, 2.0]]}


class _CallsSystem:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_queryd_unpickler_still_refuses_every_other_global(tmp_path, monkeypatch):
    from vtg_data.corpora.queryd import load_plain_pickle

    monkeypatch.chdir(tmp_path)
    bad_factory = collections.defaultdict(list)
    bad_factory.default_factory = os.getcwd  # a defaultdict whose factory is a function
    refused = [
        pickle.dumps({"a": _CallsSystem()}),
        pickle.dumps(bad_factory),
        pickle.dumps(collections.OrderedDict(a=1)),
        pickle.dumps(Path("/etc")),
        # builtins.list admitted as a factory is inert: a pickle calling it is refused
        b"\x80\x02c__builtin__\nlist\nq\x00X\x01\x00\x00\x00xq\x01\x85q\x02Rq\x03.",
    ]
    for index, data in enumerate(refused):
        with pytest.raises(RecordError, match="refused"):
            load_plain_pickle(write(tmp_path, f"bad{index}.pkl", data))
    assert not (tmp_path / "pwned").exists()


def test_queryd_listed_video_without_duration_is_kept_and_flagged(tmp_path):
    files = queryd_files(tmp_path, {"video-abc": [[1.0, 5.0]], "video-nod": [[3.0, 9.5], [12.0, 14.0]],
                                    "video-zero": [[0, 0]]},
                         {"abc": 60.0}, listing="video-abc\nvideo-nod\nvideo-zero\n")  # fmt: skip
    rows = parse("queryd", "train", files)
    known = rows["queryd/train/abc/0"]
    assert (
        known.duration == 60.0
        and known.duration_source == "annotation"
        and "duration_missing" not in known.flags
    )
    for uid in ("queryd/train/nod/0", "queryd/train/nod/1"):
        row = rows[uid]
        assert row.has_gt and "duration_missing" in row.flags
        assert row.duration == 14.0 and row.duration_source == "windows_max"
    assert rows["queryd/train/nod/0"].windows == [[3.0, 9.5]]
    zero = rows["queryd/train/zero/0"]
    assert not zero.has_gt and "duration_missing" in zero.flags


def test_queryd_missing_duration_comes_from_the_video_when_it_is_there(tmp_path):
    raw = tmp_path / "from"
    queryd_files(raw, {"video-abc": [[1.0, 5.0]], "video-nod": [[1.0, 2.0]]}, {"abc": 60.0},
                 listing="video-abc\nvideo-nod\n")  # fmt: skip
    write(raw, "val_list.txt", b"video-abc\n")
    videos = tmp_path / "root" / "videos" / "queryd"
    videos.mkdir(parents=True)
    lavfi_video(videos / "nod.mp4", "color=c=red:s=64x64:r=10:d=7.5")
    # hand-made files, not the pinned release
    result = download(
        DownloadConfig("queryd", tmp_path / "root", splits=("train",), from_dir=raw, verify=False)
    )
    assert not result.errors, result.errors
    table = pl.read_parquet(tmp_path / "root/normalized/queryd/train.parquet")
    nod = table.filter(pl.col("video_id") == "nod").row(0, named=True)
    assert nod["duration_source"] == "probe" and nod["duration"] == pytest.approx(7.5, abs=0.05)
    assert "duration_missing" not in nod["flags"] and nod["has_gt"]
    abc = table.filter(pl.col("video_id") == "abc").row(0, named=True)
    assert abc["duration_source"] == "annotation" and "video_missing" in abc["flags"]


def test_download_list_names_the_splits_each_source_has():
    from vtg_data.fetch.catalogue import catalogue

    entries = {e["corpus"]: e for e in catalogue()}
    assert entries["queryd"]["splits"] == ["train", "val"]  # VideoMind's lists: train_list, val_list
    assert entries["tvg_r1"]["splits"] == ["rl", "val"]
    assert entries["nextgqa"]["splits"] == ["val", "test"]


# --------------------------------------------------------------------------------------------- TVG-R1

TVG_ITEMS = [
    {"dataset": "didemo", "problem": "Find the moment: the dog runs across the yard. ", "choices": [],
     "video": "didemo/videos/123.mp4", "video_length": 30.0, "gt_frame": [5.0, 10.0], "ground_truth": "[5.0, 10.0]"},
    {"dataset": "nextgqa", "problem": "Why did the boy pick up the present? Options:", "video": "nextqa/4882821564.mp4",
     "choices": ["(A) share it", "(B) unwrap it", "(C) throw it", "(D) hide it"], "video_length": 89.9,
     "gt_frame": [12.0, 20.5], "ground_truth": "B"},
]  # fmt: skip


def test_tvg_r1_multiple_choice_rows_are_grounded_questions(tmp_path):
    path = write(tmp_path, "TVG_RL.json", TVG_ITEMS)
    rows = parse("tvg_r1", "rl", {path.name: path})
    moment, question = rows["tvg_r1/rl/0"], rows["tvg_r1/rl/1"]
    assert moment.task == "moment_retrieval" and "options" not in moment.extra
    assert (
        question.task == "grounded_qa" and question.query == "Why did the boy pick up the present? Options:"
    )
    assert question.extra["options"] == TVG_ITEMS[1]["choices"] and question.extra["answer"] == "B"
    assert question.windows == [[12.0, 20.5]] and "prompt_as_query" in question.flags


def test_tvg_r1_val_file_is_a_split(tmp_path):
    path = write(tmp_path, "TVG_RL_val.json", TVG_ITEMS[:1])
    (row,) = parse("tvg_r1", "val", {path.name: path}).values()
    assert row.uid == "tvg_r1/val/0" and row.split == "val"
    assert [f.name for f in get_adapter("tvg_r1").native_files("val")] == ["TVG_RL_val.json"]


def test_import_matches_an_instruction_that_contains_the_query():
    from vtg_data.stages.coldstart_import import import_traces

    samples = [
        {"uid": "didemo/val/1", "video_id": "123", "query": "The dog runs across the yard."},
        {"uid": "didemo/val/2", "video_id": "123", "query": "the dog runs"},
        {"uid": "didemo/val/3", "video_id": "123", "query": "a cat sleeps"},
        {"uid": "didemo/val/4", "video_id": "123", "query": "a man waves"},
    ]
    lines = [
        {"problem": "Find the moment: the dog runs across the yard. Think first.", "video": "didemo/videos/123.mp4",
         "response": "<think>a</think> <time>[5, 10]</time>"},
        {"problem": "Find the moment: A cat sleeps.", "video": "123.mp4", "response": "<think>b</think> <time>[1, 2]</time>"},
        {"problem": "Find: a cat sleeps and a man waves", "video": "123.mp4", "response": "c"},
        {"problem": "Find the moment: a bird sings", "video": "123.mp4", "response": "d"},
    ]  # fmt: skip
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "TVG_raw_annotation.jsonl"
        path.write_text("\n".join(json.dumps(x) for x in lines))
        result = import_traces([path], samples)
    # the longest contained query wins when the other is part of it
    assert [uid for uid, _, _ in result.traces] == ["didemo/val/1", "didemo/val/3"]
    assert result.by_containment == 2
    assert len(result.ambiguous) == 1 and "didemo/val/3, didemo/val/4" in result.ambiguous[0]
    assert len(result.unmatched) == 1 and "line 4" in result.unmatched[0]


# --------------------------------------------------------------------------------------------- tags, chunks


@pytest.mark.corpora
def test_tvgbench_items_carry_the_tag_of_the_split_they_come_from(shared_corpora, tmp_path):
    download(
        DownloadConfig(
            "tvgbench", tmp_path, splits=("test",), from_dir=shared_corpora / "tvgbench", verify=False
        )
    )
    table = pl.read_parquet(tmp_path / "normalized/tvgbench/test.parquet")
    tags = collections.Counter(t for ts in table["benchmarks"].to_list() for t in ts)
    assert tags == {"tvgbench": 632, "charades_sta_test": 138, "activitynet_val_2": 168, "tacos_val": 168,
                    "hirest_val": 158}  # fmt: skip


@pytest.mark.corpora
def test_check_leakage_finds_tvgbench_items_in_hirest_val(shared_corpora, tmp_path):
    from vtg_data.leakage import check_leakage

    for corpus, verify in (("hirest", True), ("tvgbench", False)):
        split = "val" if corpus == "hirest" else "test"
        download(
            DownloadConfig(corpus, tmp_path, splits=(split,), from_dir=shared_corpora / corpus, verify=verify)
        )
    report = check_leakage(
        [tmp_path / "normalized/hirest/val.parquet"], [tmp_path / "normalized/tvgbench/test.parquet"]
    )
    assert report.rows_benchmark_tagged == 1083  # every HiREST val row is a benchmark source
    assert report.shared_videos == 55 and report.rows_query_overlap >= 150


def test_didemo_chunk_outside_the_six_is_a_record_error(tmp_path):
    items = [{"annotation_id": 7, "video": "1@N0_22_ab.mp4", "description": "a dog", "num_segments": 6,
              "times": [[7, 9], [1, 1], [1, 1], [1, 1]]},
             {"annotation_id": 8, "video": "1@N0_22_ab.mp4", "description": "a cat", "num_segments": 6,
              "times": [[1.5, 2], [1, 1], [1, 1], [1, 1]]}]  # fmt: skip
    path = write(tmp_path, "val_data.json", items)
    with pytest.raises(ValidationFailed) as info:
        parse("didemo", "val", {path.name: path})
    assert len(info.value.errors) == 2
    message = str(info.value)
    assert (
        "val_data.json: record annotation_id 7 (item 0): annotator window [7, 9] is not a pair of chunk indices 0-5"
        in message
    )
    assert "annotation_id 8" in message
