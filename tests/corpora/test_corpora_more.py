"""HiREST, QuerYD, InternVid-VTime, Ego4D-NLQ, YouCook2 and TVGBench from native-format fixtures
written after the corpora reference, with the quirks it lists; benchmark membership tags."""

import json
import os
import pickle
from pathlib import Path

import pytest

from vtg_data.corpora import REGISTRY, ParseContext, get_adapter
from vtg_data.schema import RecordError, ValidationFailed


def parse(corpus: str, split: str, files: dict[str, Path]):
    return get_adapter(corpus).parse(split, files, ParseContext())


def write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def by_uid(rows):
    return {r.uid: r for r in rows}


# --------------------------------------------------------------------------------------------- HiREST

HIREST_TRAIN = {
    "Make a Plaster Mask": {"IUK9kqnz5Hc.mp4": {"relevant": True, "clip": False, "v_duration": 529.0, "bounds": [0, 0], "steps": []}},
    "How to tie a ribbon": {"CAB-4KfX8x0.mp4": {"relevant": True, "clip": True, "v_duration": 354.97, "bounds": [43, 290],
                                                "steps": [{"index": 0, "heading": "Flip and twist ribbon", "absolute_bounds": [43, 60]},
                                                          {"index": 1, "heading": "Put wire", "absolute_bounds": [60, 290]}]}},
}  # fmt: skip


def test_hirest_moments_steps_and_whole_video_records(tmp_path):
    rows = by_uid(
        parse(
            "hirest", "train", {"all_data_train.json": write(tmp_path, "all_data_train.json", HIREST_TRAIN)}
        )
    )
    assert len(rows) == 4  # one whole-video record, one moment, two steps
    whole = rows["hirest/train/moment/IUK9kqnz5Hc/0"]
    assert not whole.has_gt and whole.windows == [] and "whole_video_relevant" in whole.flags
    moment = rows["hirest/train/moment/CAB-4KfX8x0/1"]
    assert (
        moment.task == "moment_retrieval" and moment.windows == [[43.0, 290.0]] and moment.duration == 354.97
    )
    step = rows["hirest/train/step/CAB-4KfX8x0/1/1"]
    assert step.task == "step_grounding" and step.query == "Put wire" and step.windows == [[60.0, 290.0]]
    assert step.provenance["record"].endswith("step 1")


def test_hirest_test_moments_come_from_the_evaluation_file_not_the_placeholders(tmp_path):
    split = {"Clean a fan": {"vid00000001.mp4": {"relevant": True, "clip": True, "v_duration": 200.0, "bounds": [0, 1], "steps": []}},
             "Fold a shirt": {"vid00000002.mp4": {"relevant": True, "clip": True, "v_duration": 90.0, "bounds": [0, 1], "steps": []}}}  # fmt: skip
    truth = {"vid00000001.mp4": {"captions": [{"start": 12.5, "end": 30.0, "sentence": "Unplug the fan"},
                                              {"start": 30.0, "end": 71.25, "sentence": "Wipe the blades"}],
                                 "bounds": [[12.5, 30.0], [30.0, 71.25]]}}  # fmt: skip
    files = {"all_data_test.json": write(tmp_path, "all_data_test.json", split),
             "formatted_moment_evaluation_gt.json": write(tmp_path, "formatted_moment_evaluation_gt.json", truth)}  # fmt: skip
    rows = by_uid(parse("hirest", "test", files))
    moment = rows["hirest/test/moment/vid00000001/0"]
    assert (
        moment.windows == [[12.5, 71.25]]
        and "moment_from_steps" in moment.flags
        and moment.windows_raw == [[0.0, 1.0]]
    )
    assert rows["hirest/test/step/vid00000001/0/1"].windows == [[30.0, 71.25]]
    missing = rows[
        "hirest/test/moment/vid00000002/1"
    ]  # not in the evaluation file: no ground truth, not [0, 1]
    assert not missing.has_gt and missing.windows == [] and "gt_placeholder" in missing.flags
    # without the evaluation file, every test moment is a placeholder
    alone = parse("hirest", "test", {"all_data_test.json": files["all_data_test.json"]})
    assert all(not r.has_gt and "gt_placeholder" in r.flags for r in alone)


# --------------------------------------------------------------------------------------------- QuerYD


def queryd_files(tmp_path, captions, times, listing="video-abc123\nvideo-def456\n", durations=None):
    return {
        "train_list.txt": write(tmp_path, "train_list.txt", listing.encode()),
        "raw_captions_combined_filtered-v2.pkl": write(tmp_path, "raw_captions_combined_filtered-v2.pkl", pickle.dumps(captions)),
        "times_captions_combined_filtered-v2.pkl": write(tmp_path, "times_captions_combined_filtered-v2.pkl", pickle.dumps(times)),
        "durations.json": write(tmp_path, "durations.json", durations or {"abc123": 60.0, "def456": 33.3}),
    }  # fmt: skip


def test_queryd_pickles_become_rows(tmp_path):
    captions = {"video-abc123": [["a", "man", "opens", "the", "door"], ["he", "sits", "down"]],
                "video-def456": [["the", "dog", "runs"]]}  # fmt: skip
    times = {"video-abc123": [[1.5, 7.0], [7.0, 61.0]], "video-def456": [[0.0, 5.25]]}
    rows = by_uid(parse("queryd", "train", queryd_files(tmp_path, captions, times)))
    assert len(rows) == 3
    first = rows["queryd/train/abc123/0"]
    assert (
        first.query == "a man opens the door"
        and first.windows == [[1.5, 7.0]]
        and first.video_path == "abc123.mp4"
    )
    assert (
        rows["queryd/train/abc123/1"].windows == [[7.0, 60.0]]
        and "end_clamped" in rows["queryd/train/abc123/1"].flags
    )
    assert rows["queryd/train/def456/0"].duration == 33.3


class _Exploit:
    """Unpickling this would run a shell command."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_queryd_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = queryd_files(
        tmp_path, {"video-abc123": [["x"]]}, {"video-abc123": [[0, 1]]}, listing="video-abc123\n"
    )
    files["raw_captions_combined_filtered-v2.pkl"].write_bytes(pickle.dumps({"video-abc123": _Exploit()}))
    with pytest.raises(ValidationFailed) as info:
        parse("queryd", "train", files)
    message = str(info.value)
    assert (
        "raw_captions_combined_filtered-v2.pkl" in message
        and "refused to load" in message
        and "system" in message
    )
    assert not (tmp_path / "pwned").exists()


def test_queryd_listed_video_without_captions_is_an_error(tmp_path):
    files = queryd_files(tmp_path, {"video-abc123": [["x"]]}, {"video-abc123": [[0, 1]]})
    with pytest.raises(ValidationFailed, match="video-def456 is listed but has no captions"):
        parse("queryd", "train", files)


def test_plain_pickle_loader_accepts_only_plain_data(tmp_path):
    from vtg_data.corpora.queryd import load_plain_pickle

    path = write(tmp_path, "ok.pkl", pickle.dumps({"a": [1, 2.5, ("x", None)], "b": {1, 2}}, protocol=4))
    assert load_plain_pickle(path) == {"a": [1, 2.5, ("x", None)], "b": {1, 2}}
    with pytest.raises(RecordError, match="refused"):
        load_plain_pickle(write(tmp_path, "path.pkl", pickle.dumps(Path("/etc"))))
    with pytest.raises(RecordError, match="malformed pickle"):
        load_plain_pickle(write(tmp_path, "cut.pkl", pickle.dumps({"a": 1})[:-3]))


# --------------------------------------------------------------------------------------------- InternVid-VTime


def test_internvid_vtime_crop_relative_rows(tmp_path):
    lines = [
        {
            "vid": "3n3oCNerzV0_129.8_184.0",
            "duration": 54.2,
            "query": " a woman counts money",
            "span": [0.0, 9.4],
        },
        {
            "vid": "-abcdefghij_0.0_30.0.mp4",
            "duration": 30.0,
            "query": "two people shake hands",
            "span": [[28.0, 31.5]],
        },
    ]
    path = write(
        tmp_path,
        "anno_internvid_vtime_query_gpt4o_mini.jsonl",
        "\n".join(json.dumps(x) for x in lines).encode(),
    )
    rows = parse("internvid_vtime", "train", {path.name: path})
    assert [r.parent_video_id for r in rows] == ["3n3oCNerzV0", "-abcdefghij"]
    assert rows[0].query == "a woman counts money" and "query_whitespace_fixed" in rows[0].flags
    assert all("crop_relative" in r.flags for r in rows)
    assert (
        rows[1].windows == [[28.0, 30.0]]
        and "end_clamped" in rows[1].flags
        and rows[1].video_path == "-abcdefghij_0.0_30.0.mp4"
    )


# --------------------------------------------------------------------------------------------- Ego4D-NLQ


def nlq(queries, with_windows=True):
    return {"version": "1", "videos": [{"video_uid": "d250521e", "clips": [{
        "clip_uid": "fae92e70", "video_start_sec": 0.0210286, "video_end_sec": 480.0210286,
        "annotations": [{"annotation_uid": "f3083484", "language_queries": [
            {**q, **({"clip_start_sec": q.get("s", 0.0), "clip_end_sec": q.get("e", 43.6657)} if with_windows else {})}
            for q in queries]}]}]}]}  # fmt: skip


def test_ego4d_nlq_clip_relative_windows_and_missing_queries(tmp_path):
    native = nlq([{"query": "How many frying pans can I see on the shelf?", "template": "Objects: How many X's?"},
                  {"template": "no query text"}, {"query": "  ", "s": 470.0, "e": 490.0}])  # fmt: skip
    rows = parse("ego4d_nlq", "val", {"nlq_val.json": write(tmp_path, "nlq_val.json", native)})
    first, no_text, blank = rows
    assert first.uid == "ego4d_nlq/val/fae92e70/f3083484/0" and first.video_id == "fae92e70"
    assert first.parent_video_id == "d250521e" and first.clip_start == pytest.approx(0.0210286)
    assert first.duration == pytest.approx(480.0) and first.windows == [[0.0, 43.6657]]
    assert json.loads(json.dumps(first.extra))["template"] == "Objects: How many X's?"
    assert not no_text.has_gt and "query_missing" in no_text.flags
    assert "query_missing" in blank.flags and blank.windows == [[470.0, pytest.approx(480.0)]]


def test_ego4d_nlq_test_has_no_ground_truth(tmp_path):
    native = nlq([{"query": "where was the knife?"}], with_windows=False)
    rows = parse(
        "ego4d_nlq",
        "test",
        {"nlq_test_unannotated.json": write(tmp_path, "nlq_test_unannotated.json", native)},
    )
    assert len(rows) == 1 and not rows[0].has_gt and rows[0].windows == []


# --------------------------------------------------------------------------------------------- YouCook2


def test_youcook2_splits_by_subset_and_keeps_each_step_once(tmp_path):
    native = {"database": {
        "GLd3aX16zBg": {"duration": 241.62, "subset": "training", "recipe_type": "113", "video_url": "u",
                        "annotations": [{"segment": [90, 102], "id": 0, "sentence": "spread margarine on two slices of white bread"},
                                        {"segment": [114, 127], "id": 1, "sentence": "place a slice of cheese on the bread"}]},
        "xHr8X2Wpmno": {"duration": 100.0, "subset": "validation", "recipe_type": "101", "video_url": "u",
                        "annotations": [{"segment": [95, 104], "id": 0, "sentence": "serve"}]}}}  # fmt: skip
    path = write(tmp_path, "youcookii_annotations_trainval.json", native)
    train = parse("youcook2", "train", {path.name: path})
    assert [r.uid for r in train] == ["youcook2/train/GLd3aX16zBg/0", "youcook2/train/GLd3aX16zBg/1"]
    assert train[1].windows == [[114.0, 127.0]] and train[1].task == "step_grounding"
    val = parse("youcook2", "val", {path.name: path})
    assert len(val) == 1 and val[0].windows == [[95.0, 100.0]] and "end_clamped" in val[0].flags


# --------------------------------------------------------------------------------------------- TVGBench


def test_tvgbench_answers_crops_clamps_and_membership(tmp_path):
    items = [
        {"path": "./dataset/timer1/videos/tvgbench_data/KWZSA.mp4", "question": "a person was sitting at a table.",
         "answer": "13.4-28.1", "start": None, "end": None, "duration": 30.12, "dataset_name": "charades",
         "source": ".../Charades_sta_test.json", "qsemtype": "Human Pose"},
        {"path": "./dataset/timer1/videos/tvgbench_data/EXYY8.mp4", "question": "person opens a door.",
         "answer": "14.1-20.0", "start": None, "end": None, "duration": 19.29, "dataset_name": "charades",
         "source": ".../Charades_sta_test.json"},
        {"path": "./dataset/timer1/videos/tvgbench_data/bbd99850-bcb0-460e-8a40-056f1e618f88.mp4",
         "question": "where was eggs?", "answer": "0.81-12.09", "start": 0.93, "end": 70.88, "duration": 69.95,
         "source": ".../nlq_r1_val.json"},
    ]  # fmt: skip
    rows = parse("tvgbench", "test", {"tvgbench.json": write(tmp_path, "tvgbench.json", items)})
    charades, clamped, nlq_item = rows
    assert (
        charades.windows == [[13.4, 28.1]]
        and charades.video_id == "KWZSA"
        and charades.raw_unit == "str_range"
    )
    assert charades.benchmarks == ["charades_sta_test", "tvgbench"]
    assert (
        clamped.windows == [[14.1, 19.29]]
        and "end_clamped" in clamped.flags
        and clamped.windows_raw == [[14.1, 20.0]]
    )
    assert nlq_item.clip_start == 0.93 and nlq_item.clip_end == 70.88 and "crop_relative" in nlq_item.flags
    assert nlq_item.benchmarks == ["ego4d_nlq_val", "tvgbench"] and nlq_item.extra["origin"] == "ego4d_nlq"


def test_tvgbench_bad_answer_names_the_item(tmp_path):
    items = [{"path": "a.mp4", "question": "q", "answer": "13.4 to 28.1", "duration": 30.0}]
    with pytest.raises(ValidationFailed, match=r"tvgbench.json: record item 0.*'13.4 to 28.1'"):
        parse("tvgbench", "test", {"tvgbench.json": write(tmp_path, "tvgbench.json", items)})


# --------------------------------------------------------------------------------------------- membership


def test_benchmark_splits_are_tagged(tmp_path):
    qvh = {
        "qid": 1,
        "query": "q",
        "duration": 150,
        "vid": "abcdefghijk_60.0_210.0",
        "relevant_windows": [[2, 4]],
    }
    path = write(tmp_path, "highlight_val_release.jsonl", json.dumps(qvh).encode())
    assert parse("qvhighlights", "val", {path.name: path})[0].benchmarks == ["qvhighlights_val"]
    tacos = {"s13-d21.avi": {"fps": 29.4, "num_frames": 2940, "timestamps": [[0, 294]], "sentences": ["cut"]}}
    for split, tags in (("train", []), ("test", ["tacos_test"])):
        path = write(tmp_path, f"{split}.json", tacos)
        assert parse("tacos", split, {path.name: path})[0].benchmarks == tags
    assert set(REGISTRY) >= {"hirest", "queryd", "internvid_vtime", "ego4d_nlq", "youcook2", "tvgbench"}


def test_download_list_shows_every_corpus():
    from typer.testing import CliRunner

    from vtg_data.cli import app
    from vtg_data.fetch.catalogue import catalogue

    result = CliRunner().invoke(app, ["download", "--list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in REGISTRY:
        assert name in result.output
    entries = {e["corpus"]: e for e in catalogue()}
    assert entries["ego4d_nlq"]["videos"] == "manual" and entries["hirest"]["videos"] == "automatic"
    assert entries["charades_sta"]["benchmarks"] == {"test": "charades_sta_test"}
    assert (
        entries["youcook2"]["splits"] == ["train", "val"] and entries["youcook2"]["task"] == "step grounding"
    )
    missing = CliRunner().invoke(app, ["download"])
    assert missing.exit_code != 0 and "--list" in missing.output


# --------------------------------------------------------------------------------------------- ReXTime, NExT-GQA


def test_rextime_grounded_questions_on_anet_and_qvh_videos(tmp_path):
    records = [
        {"qid": "qvh_val241", "vid": "2I9-kvemtSU_510.0_660.0", "duration": 150, "source": "qvhighlights_val",
         "question": "What were the woman and man doing before they showed reactions?", "category": "sequential",
         "answer": "From <s0> to <e0>, a woman and a man are eating spicy food.", "ans": "A", "span": [0, 28],
         "options": ["a woman and a man are eating spicy food", "running", "a tour", "karaoke"]},
        {"qid": "anet_val384", "vid": "v_ZMTi498qnPc", "duration": 80.5, "source": "ActivityNet_val_2",
         "question": "Why does the man lift the box?", "category": "means_end", "answer": "x", "ans": "B",
         "span": [70.0, 81.0], "options": ["a", "b", "c", "d"]},
    ]  # fmt: skip
    path = write(
        tmp_path, "rextime_val.json", "\n".join(json.dumps(r) for r in records).encode()
    )  # the repo's JSONL form
    rows = by_uid(parse("rextime", "val", {path.name: path}))
    qvh = rows["rextime/val/qvh_val241"]
    assert qvh.task == "grounded_qa" and qvh.windows == [[0.0, 28.0]] and qvh.benchmarks == ["rextime_val"]
    assert (
        qvh.extra["ans"] == "A" and len(qvh.extra["options"]) == 4 and qvh.extra["category"] == "sequential"
    )
    anet = rows["rextime/val/anet_val384"]
    assert anet.windows == [[70.0, 80.5]] and "end_clamped" in anet.flags
    from vtg_data.leakage import video_key

    assert {video_key(r.video_id) for r in rows.values()} == {"2I9-kvemtSU", "ZMTi498qnPc"}
    test = write(
        tmp_path,
        "rextime_test_release.json",
        [{k: v for k, v in records[0].items() if k not in ("span", "ans")}],
    )
    (hidden,) = parse("rextime", "test", {test.name: test})
    assert not hidden.has_gt and hidden.windows == []


def nextgqa_files(tmp_path, rows, gsub):
    header = "video_id,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
    lines = "".join(f"{v},900,640,480,{q},{a},{qid},{t},x0,x1,x2,x3,x4\n" for v, q, a, qid, t in rows)
    return {
        "test.csv": write(tmp_path, "test.csv", (header + lines).encode()),
        "gsub_test.json": write(tmp_path, "gsub_test.json", gsub),
        "map_vid_vidorID.json": write(tmp_path, "map_vid_vidorID.json", {"4010069381": "1023/4010069381"}),
    }


def test_nextgqa_spans_union_missing_and_video_paths(tmp_path):
    files = nextgqa_files(tmp_path, [("4010069381", "why did the lady pick up the puppy", "to pet it", 6, "CW"),
                                      ("4010069381", "what did the lady do after", "put it down", 7, "TN")],
                          {"4010069381": {"duration": 36.6, "location": {"6": [[5.2, 9.0], [12.0, 40.0]]}, "fps": 25}})  # fmt: skip
    rows = by_uid(parse("nextgqa", "test", files))
    spans = rows["nextgqa/test/4010069381/6"]
    assert spans.windows == [[5.2, 9.0], [12.0, 36.6]] and {"multi_window", "end_clamped"} <= spans.flags
    assert spans.video_path == "1023/4010069381.mp4" and spans.benchmarks == ["nextgqa_test"]
    assert spans.extra["options"] == ["x0", "x1", "x2", "x3", "x4"] and spans.extra["type"] == "CW"
    unspanned = rows["nextgqa/test/4010069381/7"]
    assert not unspanned.has_gt and unspanned.duration == 36.6


def test_nextgqa_span_without_question_is_an_error(tmp_path):
    files = nextgqa_files(tmp_path, [("4010069381", "q", "a", 6, "CW")],
                          {"4010069381": {"duration": 36.6, "location": {"6": [[1, 2]], "9": [[3, 4]]}}})  # fmt: skip
    with pytest.raises(ValidationFailed, match=r"gsub_test.json: record 4010069381/9.*test.csv lacks"):
        parse("nextgqa", "test", files)


# --------------------------------------------------------------------------------------------- TimeLens, TVG-R1


def test_timelens_bench_and_100k(tmp_path):
    bench = {
        "3MSZA": {
            "duration": 30.5,
            "spans": [[1.0, 4.5], [20.0, 31.0]],
            "queries": ["a person opens a door.", " he sits "],
        }
    }
    path = write(tmp_path, "charades-timelens.json", bench)
    rows = parse("timelens_bench", "charades", {path.name: path})
    assert [r.windows for r in rows] == [[[1.0, 4.5]], [[20.0, 30.5]]] and "end_clamped" in rows[1].flags
    assert (
        rows[0].benchmarks == ["charades_sta_test", "timelens_bench"]
        and rows[0].video_path == "charades/3MSZA.mp4"
    )
    bad = write(
        tmp_path, "activitynet-timelens.json", {"v_a": {"duration": 9, "spans": [[1, 2]], "queries": []}}
    )
    with pytest.raises(ValidationFailed, match="1 spans but 0 queries"):
        parse("timelens_bench", "activitynet", {bad.name: bad})

    lines = [{"video_path": "cosmo_cap/abc.mp4", "source": "cosmo_cap", "duration": 40.0,
              "events": [{"query": "a dog jumps", "span": [[3.0, 8.0]]}, {"query": "it lands", "span": [8.0, 9.5]}]}]  # fmt: skip
    path = write(tmp_path, "timelens-100k.jsonl", "\n".join(json.dumps(x) for x in lines).encode())
    rows = parse("timelens_100k", "train", {path.name: path})
    assert [r.windows for r in rows] == [[[3.0, 8.0]], [[8.0, 9.5]]]
    assert rows[0].video_id == "abc" and rows[0].extra["origin"] == "cosmo_cap" and rows[0].benchmarks == []


def test_tvg_r1_rl_set_import(tmp_path):
    items = [{"dataset": "didemo", "problem": "Find the moment: the dog runs. ", "choices": [],
              "video": "didemo/videos/123.mp4", "video_length": 30.0, "gt_frame": [5.0, 10.0],
              "ground_truth": "<time>[5.0, 10.0]</time>"}]  # fmt: skip
    path = write(tmp_path, "TVG_RL.json", items)
    (row,) = parse("tvg_r1", "rl", {path.name: path})
    assert row.windows == [[5.0, 10.0]] and row.duration == 30.0 and row.video_id == "123"
    assert "prompt_as_query" in row.flags and row.extra["origin"] == "didemo"


def test_ego4d_nlq_videomind_jsonl_when_the_official_file_is_absent(tmp_path):
    lines = [
        {
            "vid": "fae92e70",
            "duration": 480.0,
            "query": "where was the knife?",
            "relevant_windows": [[10.5, 14.0]],
        }
    ]
    path = write(tmp_path, "nlq_val.jsonl", "\n".join(json.dumps(x) for x in lines).encode())
    (row,) = parse("ego4d_nlq", "val", {path.name: path})
    assert row.video_id == "fae92e70" and row.windows == [[10.5, 14.0]] and row.parent_video_id is None
    assert [f.name for f in get_adapter("ego4d_nlq").native_files("val")] == ["nlq_val.json", "nlq_val.jsonl"]
