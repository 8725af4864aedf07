"""Quirks of splits not shipped with the repo, built as small native-format files."""

import json
from pathlib import Path

import pytest

from vtg_data.corpora import ParseContext, get_adapter
from vtg_data.schema import ValidationFailed


def parse(corpus: str, split: str, files: dict[str, Path], **options):
    strict = options.pop("strict", False)
    return get_adapter(corpus).parse(split, files, ParseContext(strict=strict, options=options))


def write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def charades_files(
    tmp_path, lines: str, csv_rows="LEOL6,x,x,5,6,Yes,s,o,d,a,20.5\nAKKWU,x,x,5,6,Yes,s,o,d,a,40.0\n"
):
    header = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
    return {
        "charades_sta_train.txt": write(tmp_path, "charades_sta_train.txt", lines),
        "Charades_v1_train.csv": write(tmp_path, "Charades_v1_train.csv", header + csv_rows),
    }


def test_charades_train_inverted_lines_are_swapped_and_flagged(tmp_path):
    files = charades_files(
        tmp_path,
        "LEOL6 8.0 7.0##a person sits.\nAKKWU 38.0 13.0##a person runs.\nAKKWU 38.0 13.0##a person runs.\n",
    )
    rows = parse("charades_sta", "train", files)
    assert [r.windows for r in rows] == [[[7.0, 8.0]], [[13.0, 38.0]], [[13.0, 38.0]]]
    assert all("inverted_swapped" in r.flags for r in rows)
    assert "duplicate" in rows[2].flags and "duplicate" not in rows[1].flags
    with pytest.raises(ValidationFailed, match="strict"):
        parse("charades_sta", "train", files, strict=True)


def test_charades_missing_csv_row_names_the_line(tmp_path):
    files = charades_files(tmp_path, "LEOL6 1.0 2.0##ok.\nZZZZZ 1.0 2.0##no duration.\n")
    with pytest.raises(ValidationFailed) as info:
        parse("charades_sta", "train", files)
    assert "charades_sta_train.txt: record line 2" in str(info.value)
    assert "ZZZZZ" in str(info.value)


def test_activitynet_train_quirks(tmp_path):
    data = {
        "v_0bosp4-pyTM": {
            "duration": 100.0,
            "timestamps": [[61.29, 60.71], [1, 2]],
            "sentences": [" Inverted.", "  Two  spaces."],
        },
        "v_N7ppHQNikv8": {"duration": 50, "timestamps": [[34.77, 34.77]], "sentences": ["Zero length."]},
    }
    rows = parse("activitynet_captions", "train", {"train.json": write(tmp_path, "train.json", data)})
    by_uid = {r.uid: r for r in rows}
    inverted = by_uid["activitynet_captions/train/v_0bosp4-pyTM/0"]
    assert inverted.windows == [[60.71, 61.29]] and "inverted_swapped" in inverted.flags
    assert inverted.query_raw == " Inverted." and inverted.query == "Inverted."
    assert by_uid["activitynet_captions/train/v_0bosp4-pyTM/1"].query == "Two spaces."
    assert "zero_length" in by_uid["activitynet_captions/train/v_N7ppHQNikv8/0"].flags


def test_activitynet_duplicate_sentence_with_other_window(tmp_path):
    data = {"v_a": {"duration": 9.0, "timestamps": [[0, 1], [2, 3]], "sentences": ["Same.", "Same."]}}
    rows = parse("activitynet_captions", "val_1", {"val_1.json": write(tmp_path, "val_1.json", data)})
    assert "duplicate_query" in rows[1].flags


def test_qvhighlights_release_test_has_no_ground_truth(tmp_path):
    lines = [{"qid": 1, "query": "A man talks.", "duration": 150, "vid": "-a_b_c_60.0_210.0"}]
    path = write(tmp_path, "highlight_test_release.jsonl", "\n".join(json.dumps(x) for x in lines))
    (row,) = parse("qvhighlights", "test", {"highlight_test_release.jsonl": path})
    assert not row.has_gt and row.windows == [] and "gt_hidden" in row.flags
    assert (row.parent_video_id, row.clip_start, row.clip_end) == ("-a_b_c", 60.0, 210.0)


def test_qvhighlights_test_with_gt_is_preferred(tmp_path):
    line = {
        "qid": 2,
        "query": "Q.",
        "duration": 142,
        "vid": "x_360.0_510.0",
        "relevant_windows": [[0, 4], [140, 150]],
    }
    gt = write(tmp_path, "highlight_test_with_gt.jsonl", json.dumps(line))
    release = write(
        tmp_path,
        "highlight_test_release.jsonl",
        json.dumps({k: line[k] for k in ("qid", "query", "duration", "vid")}),
    )
    (row,) = parse(
        "qvhighlights", "test", {"highlight_test_with_gt.jsonl": gt, "highlight_test_release.jsonl": release}
    )
    assert row.has_gt and row.windows == [[0.0, 4.0], [140.0, 142.0]]
    assert {"multi_window", "end_clamped"} <= row.flags


def test_tacos_end_frame_past_num_frames(tmp_path):
    data = {
        "s13-d21.avi": {"num_frames": 294, "fps": 29.4, "timestamps": [[147, 300]], "sentences": ["He cuts"]}
    }
    (row,) = parse("tacos", "train", {"train.json": write(tmp_path, "train.json", data)})
    assert row.windows == [[5.0, 10.0]] and "end_clamped" in row.flags
    assert row.video_path == "s13-d21-cam-002.avi" and row.windows_raw == [[147.0, 300.0]]


def test_didemo_test_split_annotator_variants_and_mean_rule(tmp_path):
    records = [
        {
            "annotation_id": 1,
            "description": "a",
            "video": "1@N0_22_ab.",
            "num_segments": 5,
            "times": [[0, 1], [0, 1], [1, 1], [1, 1], [1, 2]],
            "dl_link": "",
        },
        {
            "annotation_id": 2,
            "description": "b",
            "video": "1@N0_33_cd.mov",
            "num_segments": 6,
            "times": [[4, 5]] * 7,
            "dl_link": "",
        },
    ]
    files = {"test_data.json": write(tmp_path, "test_data.json", records)}
    mode = {r.uid: r for r in parse("didemo", "test", files)}
    first = mode["didemo/test/1"]
    assert first.windows == [[0.0, 10.0]]  # tie between [0,1] and [1,1]: the earliest annotator's
    assert {"annotators_5", "video_name_bare_dot", "duration_estimated"} <= first.flags
    assert first.video_path == "1@N0_22_ab"  # the bare trailing dot stripped
    assert first.parent_video_id == "22"
    assert mode["didemo/test/2"].windows == [[20.0, 30.0]] and "annotators_7" in mode["didemo/test/2"].flags
    mean = {r.uid: r for r in parse("didemo", "test", files, didemo_consolidation="mean")}
    # mean a = 0.6, mean b = 1.2 -> [round(3.0), round(11.0)] = [3, 11]
    assert (
        mean["didemo/test/1"].windows == [[3.0, 11.0]] and "consolidated=mean" in mean["didemo/test/1"].flags
    )


@pytest.mark.parametrize(
    ("content", "record", "problem"),
    [
        ("{not json", "line 1 column 2", "malformed JSON"),
        ("", "-", "empty"),
        ('{"v_a": {"duration": 5, "sentences": ["x"]}}', "v_a", "missing field 'timestamps'"),
        ('{"v_a": {"duration": 5, "timestamps": [[NaN, 2]], "sentences": ["x"]}}', "v_a[0]", "not finite"),
        ('{"v_a": {"duration": 5, "timestamps": [[-1, 2]], "sentences": ["x"]}}', "v_a[0]", "negative"),
        (
            '{"v_a": {"duration": 5, "timestamps": [[1, 2]], "sentences": ["x", "y"]}}',
            "v_a",
            "1 timestamps but 2",
        ),
        ('{"v_a": {"duration": -5, "timestamps": [[1, 2]], "sentences": ["x"]}}', "v_a", "negative"),
        (
            '{"v_a": {"duration": 5, "timestamps": [[1]], "sentences": ["x"]}}',
            "v_a[0]",
            "not a [start, end] pair",
        ),
    ],
)
def test_bad_input_names_file_record_and_problem(tmp_path, content, record, problem):
    path = write(tmp_path, "val_2.json", content)
    with pytest.raises(ValidationFailed) as info:
        parse("activitynet_captions", "val_2", {"val_2.json": path})
    message = str(info.value)
    assert f"val_2.json: record {record}" in message and problem in message


def test_all_bad_records_are_reported_together(tmp_path):
    lines = "\n".join(
        json.dumps(
            {"qid": i, "query": "q", "duration": 10, "vid": "a_0.0_10.0", "relevant_windows": [[-1, 2]]}
        )
        for i in range(3)
    )
    with pytest.raises(ValidationFailed) as info:
        parse(
            "qvhighlights",
            "val",
            {"highlight_val_release.jsonl": write(tmp_path, "highlight_val_release.jsonl", lines)},
        )
    assert len(info.value.errors) == 3
    assert "line 3" in str(info.value)
