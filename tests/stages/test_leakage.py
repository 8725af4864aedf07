import polars as pl
import pytest
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.corpora import ParseContext, get_adapter
from vtg_data.leakage import check_leakage, query_key, video_key
from vtg_data.schema import rows_to_table, write_table_atomic


@pytest.mark.parametrize(
    ("video_id", "parent", "key"),
    [
        ("v_QOlSCBRmfWY", None, "QOlSCBRmfWY"),
        ("QOlSCBRmfWY.mp4", None, "QOlSCBRmfWY"),
        ("videos/v_QOlSCBRmfWY.mkv", None, "QOlSCBRmfWY"),
        ("_6hnl_BrFvs_60.0_210.0", None, "_6hnl_BrFvs"),
        ("j7rJstUseKg_210.0_360.0", "j7rJstUseKg", "j7rJstUseKg"),
        ("35034348999@N01_6060447507_dc1a90b8ef.", None, "35034348999@N01_6060447507_dc1a90b8ef"),
        ("s13-d21", None, "s13-d21"),
    ],
)
def test_video_keys_are_corpus_independent(video_id, parent, key):
    assert video_key(video_id, parent) == key


def test_query_key_ignores_case_and_punctuation():
    assert query_key("  A man, opens the Door! ") == query_key("a man opens the door")


def write(tmp_path, corpus, split, records, name):
    adapter = get_adapter(corpus)
    path = tmp_path / f"{name}.json"
    import json

    path.write_text(json.dumps(records))
    rows = adapter.parse(split, {f"{split}.json": path}, ParseContext())
    out = tmp_path / name / corpus / f"{split}.parquet"
    write_table_atomic(rows_to_table(rows), out)
    return out


def test_overlap_by_video_and_query_and_drop(tmp_path):
    train = write(tmp_path, "activitynet_captions", "train", {
        "v_QOlSCBRmfWY": {"duration": 80.0, "timestamps": [[0, 5], [5, 9]], "sentences": ["A girl dances.", "She sits."]},
        "v_aaaaaaaaaaa": {"duration": 50.0, "timestamps": [[0, 5]], "sentences": ["Unrelated."]},
    }, "train")  # fmt: skip
    bench = write(tmp_path, "synthetic", "test", {
        "QOlSCBRmfWY": {"duration": 80.0, "timestamps": [[1, 4]], "sentences": ["a girl dances"]},
    }, "bench")  # fmt: skip
    report = check_leakage([train], [bench])
    assert (
        report.train_rows,
        report.rows_video_overlap,
        report.rows_query_overlap,
        report.shared_videos,
    ) == (3, 2, 1, 1)
    assert report.by_pair == [
        {
            "train_source": "activitynet_captions",
            "bench_source": "synthetic",
            "rows": 2,
            "videos": 1,
            "bench_tags": [],
        }
    ]
    result = CliRunner().invoke(
        app,
        ["check-leakage", "--train", str(train), "--bench", str(bench), "--drop", str(tmp_path / "clean")],
    )
    assert result.exit_code == 0, result.output
    kept = pl.read_parquet(tmp_path / "clean/activitynet_captions/train.parquet")
    assert kept["video_id"].to_list() == ["v_aaaaaaaaaaa"]
    assert kept.columns == pl.read_parquet(train).columns


def test_tvgbench_catches_charades_test_and_tagged_rows_never_train(tmp_path):
    """TVGBench items drawn from Charades-STA test match a training table that (wrongly) holds
    Charades-STA test: by video across sources, and by the rows' own benchmark tags."""
    import json

    charades = tmp_path / "charades_sta_test.txt"
    charades.write_text("KWZSA 13.4 28.1##a person was sitting at a table.\nAAAAA 1.0 5.0##someone cooks.\n")
    csv = tmp_path / "Charades_v1_test.csv"
    csv.write_text("id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
                   "KWZSA,x,x,5,6,Yes,s,o,d,a,30.12\nAAAAA,x,x,5,6,Yes,s,o,d,a,20.0\n")  # fmt: skip
    rows = get_adapter("charades_sta").parse("test", {charades.name: charades, csv.name: csv}, ParseContext())
    assert all(r.benchmarks == ["charades_sta_test"] for r in rows)
    train = tmp_path / "train" / "charades_sta" / "test.parquet"
    write_table_atomic(rows_to_table(rows), train)
    items = [{"path": "./videos/KWZSA.mp4", "question": "a person was sitting at a table.", "answer": "13.4-28.1",
              "start": None, "end": None, "duration": 30.12, "dataset_name": "charades", "source": "Charades_sta_test.json"}]  # fmt: skip
    (tmp_path / "tvgbench.json").write_text(json.dumps(items))
    bench_rows = get_adapter("tvgbench").parse(
        "test", {"tvgbench.json": tmp_path / "tvgbench.json"}, ParseContext()
    )
    bench = tmp_path / "bench" / "tvgbench" / "test.parquet"
    write_table_atomic(rows_to_table(bench_rows), bench)

    report = check_leakage([train], [bench])
    assert (report.rows_video_overlap, report.rows_query_overlap, report.rows_benchmark_tagged) == (1, 1, 2)
    assert report.by_pair[0]["bench_tags"] == ["charades_sta_test", "tvgbench"]
    assert report.kept.height == 0  # AAAAA shares no video, but it is a Charades-STA test item itself
