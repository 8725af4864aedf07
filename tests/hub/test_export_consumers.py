"""Exports against each consumer's published contract: a cold-start set (teacher windows widened
2 s each side), an RL set and a multi-window benchmark table, in all five formats.

Each consumer's loading and scoring rule is re-done here as its code does it (EasyR1's
``RLHFDataset._build_messages`` and ``AutoRewardManager``, TVG-R1's ``dataset_video.py`` loader
and ``tvgonly`` reward, LLaMA-Factory's sharegpt converter and its one-``<video>``-per-video rule,
lmms-eval's YAML task with ``dataset_path: json``); TRL, light enough to install, renders the
prompts itself. An exact answer must score full reward / 100 mIoU, the teacher's widened answer
less, and no reward or metric field may hold the teacher's window.
"""

from __future__ import annotations

import importlib.util
import json
import re
from functools import partial
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.grounding.answer import fmt
from vtg_data.hub.export import FORMATS, export

datasets = pytest.importorskip("datasets")
INPUTS = ("coldstart", "rl", "bench")


@pytest.fixture(scope="module")
def sets(synthetic_root, tmp_path_factory):
    """A cold-start set from a teacher whose windows are 2 s too wide, an RL set, a benchmark table
    where every other row has a second ground-truth window."""
    from vtg_data.grounding.simulated_teacher import write_simulated_traces
    from vtg_data.lvlm.scripted import ScriptedBackend
    from vtg_data.stages.coldstart import ColdstartConfig, build_coldstart
    from vtg_data.stages.difficulty import DifficultyConfig, score_difficulty
    from vtg_data.stages.rlset import RLConfig, build_rl
    from vtg_data.tables import load_rows

    base = tmp_path_factory.mktemp("sets")
    table = synthetic_root / "normalized/synthetic/train.parquet"
    traces = base / "teacher.jsonl"
    write_simulated_traces(load_rows([table], None), traces, widen=2.0, noise=0.0)
    build_coldstart(ColdstartConfig(data=(table,), out=base / "coldstart", import_files=(traces,), shards=1,
                                    rules=("encoding", "format", "parse")))  # fmt: skip

    def policy(request, params):
        return [f"<think>At {i}s.</think> <time>[{i}, {i + 3}]</time>" for i in range(params.n)]

    score_difficulty(
        DifficultyConfig(data=(table,), out=base / "scores", k=4, shards=1),
        backend=ScriptedBackend(policy, "p"),
    )
    build_rl(RLConfig(scores=base / "scores", out=base / "rl", policies=()))
    bench = pl.read_parquet(synthetic_root / "normalized/synthetic/test.parquet")
    second = [  # a second moment in the last tenth of the video, where the first is not
        [w + [[round(0.9 * d, 2), round(0.95 * d, 2)]]] if i % 2 == 0 and w[0][1] < 0.9 * d else [w]
        for i, (w, d) in enumerate(zip(bench["windows"].to_list(), bench["duration"].to_list(), strict=True))
    ]
    bench = bench.with_columns(pl.Series("windows", [x[0] for x in second], dtype=bench["windows"].dtype))
    (base / "bench").mkdir()
    bench.write_parquet(base / "bench" / "test.parquet")
    return {"coldstart": base / "coldstart", "rl": base / "rl", "bench": base / "bench"}


def source_rows(path: Path) -> dict[str, dict]:
    folder = path / "data" if (path / "data").is_dir() else path
    frame = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))], how="diagonal_relaxed")
    return {r["uid"]: r for r in frame.iter_rows(named=True)}


def exported(sets, synthetic_root, tmp_path, fmt_name, kind, suffix=".jsonl"):
    out = tmp_path / f"{kind}{suffix}"
    result = export(sets[kind], fmt_name, out, synthetic_root / "videos")
    text = out.read_text()
    records = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    return result, records, source_rows(sets[kind])


def answer(window) -> str:
    return f"<think>The event is there.</think> <time>[{fmt(window[0])}, {fmt(window[1])}]</time>"


def test_the_cold_start_fixture_has_teacher_windows_unlike_the_truth(sets):
    rows = source_rows(sets["coldstart"])
    assert rows and all(r["target_window"] != r["windows"][0] for r in rows.values())


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------- EasyR1


@pytest.mark.parametrize("kind", INPUTS)
def test_easyr1(sets, synthetic_root, tmp_path, kind):
    from jinja2 import Template

    result, records, rows = exported(sets, synthetic_root, tmp_path, "easyr1", kind)
    fragment = yaml.safe_load(Path(tmp_path / f"{kind}.easyr1.yaml").read_text())
    data = fragment["data"]
    assert (data["prompt_key"], data["answer_key"], data["video_key"]) == ("prompt", "answer", "videos")
    # EasyR1's RLHFDataset: load_dataset("json", data_files=...), format prompt rendered on the prompt key
    dataset = datasets.load_dataset("json", data_files=data["train_files"], split="train")
    format_prompt = Template(Path(data["format_prompt"]).read_text().strip())
    reward_path, reward_name = fragment["worker"]["reward"]["reward_function"].rsplit(":", 1)
    module = load_module(Path(reward_path), "custom_reward_fn")
    assert module.REWARD_TYPE in ("sequential", "batch")
    compute_score = partial(
        getattr(module, reward_name), **fragment["worker"]["reward"]["reward_function_kwargs"]
    )
    for example in dataset:
        text = format_prompt.render(content=example[data["prompt_key"]])
        assert "<time> </time>" in text and "<think> </think>" in text  # the policy is told the answer form
        assert text.count("<video>") == len(example["videos"]) == 1 and Path(example["videos"][0]).is_file()
        row = rows[example["uid"]]
        truth = json.loads(example["answer"])
        assert truth["windows"] == [[round(s, 3), round(e, 3)] for s, e in row["windows"]]
        exact = compute_score(
            {"response": answer(row["windows"][-1]), "response_length": 9, "ground_truth": example["answer"]}
        )
        assert exact == {"overall": pytest.approx(1.0), "format": 1.0, "accuracy": pytest.approx(1.0)}
        if kind == "coldstart":
            widened = compute_score({"response": answer(row["target_window"]), "response_length": 9,
                                     "ground_truth": example["answer"]})  # fmt: skip
            assert widened["overall"] < 0.95
    assert result.manifest["fields"]["answer"].startswith("windows")
    launch = result.manifest["launch"]  # EasyR1 takes one config= file: the fragment's keys as overrides
    assert launch.count("config=") == 1 and f"data.format_prompt={data['format_prompt']}" in launch


# --------------------------------------------------------------------------------------------- TVG-R1


def tvg_r1_load(data_yaml: Path) -> list[dict]:
    """TVG-R1's dataset_video.py: each dataset's json_path read by its suffix; data_folder required."""
    items = []
    for dataset in yaml.safe_load(data_yaml.read_text())["datasets"]:
        path = dataset["json_path"]
        if path.endswith(".jsonl"):
            current = [json.loads(line.strip()) for line in Path(path).read_text().splitlines()]
        elif path.endswith(".json"):
            current = json.loads(Path(path).read_text())
        else:
            raise ValueError(f"Unsupported file type: {path}")
        assert dataset["data_folder"]
        items += current
    return items


def tvgonly(predict: str, gt_frame, video_length: float) -> float:
    """TVG-R1's tvgonly reward: 0.1 format + 0.9 IoU of the JSON pair in <time>, times / length."""
    form = 1.0 if re.fullmatch(r"<think>.*</think>.*<time>.*</time>.*", predict, re.DOTALL) else 0.0
    try:
        start, end = json.loads(re.search(r"<time>(.*?)</time>", predict, re.DOTALL).group(1).strip())
        a = [start / video_length, end / video_length]
        b = [gt_frame[0] / video_length, gt_frame[1] / video_length]
        value = max(0, max(min(a[1], b[1]) - max(a[0], b[0]), 0) / (max(a[1], b[1]) - min(a[0], b[0])))
    except Exception:
        value = 0.0
    return 0.1 * form + 0.9 * value


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("kind", INPUTS)
def test_tvg_r1(sets, synthetic_root, tmp_path, kind, suffix):
    result, records, rows = exported(sets, synthetic_root, tmp_path, "tvg-r1", kind, suffix)
    items = tvg_r1_load(tmp_path / f"{kind}.tvg-r1.yaml")
    assert len(items) == len(records) == result.rows
    for item in items:
        problem = item["problem"] + (
            " ".join(item["choices"]) if isinstance(item["choices"], list) else item["choices"]
        )
        row = rows[item["uid"]]
        assert problem == row["query"] and Path(item["video"]).is_file()
        assert item["gt_frame"] == [round(x, 3) for x in row["windows"][0]]
        assert tvgonly(answer(row["windows"][0]), item["gt_frame"], item["video_length"]) == pytest.approx(
            1.0
        )
        if kind == "coldstart":
            assert tvgonly(answer(row["target_window"]), item["gt_frame"], item["video_length"]) < 0.95
    assert "data.system_prompt=" in result.manifest["launch"] and "tvgonly" in result.manifest["launch"]
    if kind == "bench":
        assert any("several ground-truth windows" in w for w in result.warnings)


# --------------------------------------------------------------------------------------------- TRL


@pytest.mark.parametrize("kind", INPUTS)
def test_trl(sets, synthetic_root, tmp_path, kind, tiny_model):
    trl_data = pytest.importorskip("trl.data_utils")
    from transformers import AutoProcessor

    result, records, rows = exported(sets, synthetic_root, tmp_path, "trl", kind)
    dataset = datasets.load_dataset("json", data_files=str(tmp_path / f"{kind}.jsonl"), split="train")
    processor = AutoProcessor.from_pretrained(tiny_model)
    module = load_module(tmp_path / f"{kind}.trl_reward.py", "trl_reward_file")
    example = dataset[0]
    rendered = trl_data.maybe_apply_chat_template({"prompt": example["prompt"]}, processor)["prompt"]
    assert "<|video_pad|>" in rendered and rows[example["uid"]]["query"] in rendered
    if kind == "coldstart":
        assert "completion" in dataset.column_names
    # what GRPOTrainer._calculate_rewards passes: every column but prompt/completion, as lists
    inputs = [dataset[i] for i in range(len(dataset))]
    keys = [k for k in inputs[0] if k not in ("prompt", "completion", "completion_ids")]
    kwargs = {k: [x[k] for x in inputs] for k in keys} | {
        "trainer_state": None,
        "log_extra": None,
        "log_metric": None,
    }
    exact = [[{"role": "assistant", "content": answer(rows[x["uid"]]["windows"][0])}] for x in inputs]
    scores = module.tvg_reward(
        prompts=[x["prompt"] for x in inputs], completions=exact, completion_ids=None, **kwargs
    )
    assert scores == pytest.approx([1.0] * len(inputs))
    if kind == "coldstart":
        widened = [
            [{"role": "assistant", "content": answer(rows[x["uid"]]["target_window"])}] for x in inputs
        ]
        assert max(module.tvg_reward(completions=widened, **kwargs)) < 0.95
    assert any("without its frames" in w for w in result.warnings)
    assert result.manifest["warnings"] == result.warnings


# --------------------------------------------------------------------------------------------- LLaMA-Factory


@pytest.mark.parametrize("kind", INPUTS)
def test_llamafactory(sets, synthetic_root, tmp_path, kind):
    result, records, rows = exported(sets, synthetic_root, tmp_path, "llamafactory", kind)
    entry = json.loads((tmp_path / "dataset_info.json").read_text())[kind]
    assert entry["file_name"] == f"{kind}.jsonl" and entry["formatting"] == "sharegpt"
    tags = entry["tags"]
    dataset = datasets.load_dataset("json", data_files=str(tmp_path / entry["file_name"]), split="train")
    for example in dataset:
        messages = example[entry["columns"]["messages"]]
        assert messages[0][tags["role_tag"]] == tags["system_tag"]  # the converter's system turn
        turns = messages[1:]
        accept = ((tags["user_tag"],), (tags["assistant_tag"],))
        assert all(m[tags["role_tag"]] in accept[i % 2] for i, m in enumerate(turns)) and len(turns) % 2 == 0
        videos = example[entry["columns"]["videos"]]
        assert sum(m[tags["content_tag"]].count("<video>") for m in turns) == len(videos) == 1
        row = rows[example["uid"]]
        target = turns[-1][tags["content_tag"]]
        if kind == "coldstart":  # the SFT target is the teacher's trace, its own window included
            assert target.endswith(
                f"<time>[{fmt(row['target_window'][0])}, {fmt(row['target_window'][1])}]</time>"
            )
        else:
            assert target.count("<time>") == len(row["windows"])
    other = tmp_path / "other.jsonl"
    export(sets["rl"], "llamafactory", other, synthetic_root / "videos")
    assert set(json.loads((tmp_path / "dataset_info.json").read_text())) == {kind, "other"}


# --------------------------------------------------------------------------------------------- lmms-eval


class _TaskLoader(yaml.SafeLoader):
    pass


_TaskLoader.add_constructor("!function", lambda loader, node: ("function", loader.construct_scalar(node)))


@pytest.mark.parametrize("kind", INPUTS)
def test_lmms_eval(sets, synthetic_root, tmp_path, kind):
    result, records, rows = exported(sets, synthetic_root, tmp_path, "lmms-eval", kind)
    task_dir = tmp_path / f"{kind}.lmms-eval"
    (task_file,) = task_dir.glob("*.yaml")
    task = yaml.load(task_file.read_text(), Loader=_TaskLoader)
    assert task["task"] == f"vtg_{kind}" and task["output_type"] == "generate_until"
    assert task["generation_kwargs"]["max_new_tokens"] == 2048  # the think prompt's budget
    dataset = datasets.load_dataset(task["dataset_path"], split=task["test_split"], **task["dataset_kwargs"])
    utils = load_module(task_dir / "utils.py", "utils")
    hooks = {key: getattr(utils, task[key][1].split(".", 1)[1]) for key in
             ("doc_to_visual", "doc_to_text", "doc_to_target", "process_results")}  # fmt: skip
    names = {m["metric"] for m in task["metric_list"]}
    for doc in dataset:
        row = rows[doc["uid"]]
        (video,) = hooks["doc_to_visual"](doc)
        assert Path(video).is_file() and row["query"] in hooks["doc_to_text"](doc, {})
        assert hooks["doc_to_target"](doc) == [[round(s, 3), round(e, 3)] for s, e in row["windows"]]
        for window in row["windows"]:  # every window counts, not only the first
            scores = hooks["process_results"](doc, [answer(window)])
            assert (
                set(scores) == names
                and scores["miou"] == pytest.approx(100.0)
                and scores["r1_iou07"] == 100.0
            )
        if kind == "coldstart":
            assert hooks["process_results"](doc, [answer(row["target_window"])])["miou"] < 95.0
    if kind == "bench":
        assert any(len(doc["windows"]) == 2 for doc in dataset)


# --------------------------------------------------------------------------------------------- the command


def test_export_command_writes_the_consumer_files_and_says_how_to_launch(sets, synthetic_root, tmp_path):
    for fmt_name in FORMATS:
        out = tmp_path / fmt_name / "rl.jsonl"
        result = CliRunner().invoke(app, ["export", "--format", fmt_name, "--input", str(sets["rl"]), "--out", str(out),
                                          "--video-root", str(synthetic_root / "videos")])  # fmt: skip
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / fmt_name / "rl.manifest.json").read_text())
        assert manifest["format"] == fmt_name and manifest["counts"]["exported"] > 0
        assert all(Path(p).exists() for p in manifest["consumer_files"]) and "launch:" in result.output
        assert ("without its frames" in result.output) == (fmt_name == "trl")


# ------------------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_an_export_streams_across_tables_and_batches_and_writes_nothing_when_empty(
    sets, synthetic_root, tmp_path, monkeypatch, suffix
):
    """Batches of 3 rows over two tables give the records of one whole-set pass, in file order;
    rows without ground truth are counted, not exported; an empty export leaves no file."""
    import vtg_data.hub.export as export_module

    bench = pl.read_parquet(sets["bench"] / "test.parquet")
    bench = bench.with_columns(pl.Series("has_gt", [i % 4 != 1 for i in range(bench.height)]))
    folder = tmp_path / "two"
    folder.mkdir()
    half = bench.height // 2
    bench[:half].write_parquet(folder / "a.parquet")
    bench[half:].write_parquet(folder / "b.parquet")
    whole = export(folder, "lmms-eval", tmp_path / f"whole{suffix}", synthetic_root / "videos")
    monkeypatch.setattr(export_module, "BATCH_ROWS", 3)
    out = tmp_path / f"batched{suffix}"
    batched = export(folder, "lmms-eval", out, synthetic_root / "videos")

    text = out.read_text()
    records = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    expected = [uid for uid, has_gt in zip(bench["uid"], bench["has_gt"], strict=True) if has_gt]
    assert [r["uid"] for r in records] == expected
    assert text == (tmp_path / f"whole{suffix}").read_text()
    assert batched.manifest["counts"] == whole.manifest["counts"]
    assert batched.manifest["counts"]["rows_read"] == bench.height
    assert batched.manifest["counts"]["skipped_without_ground_truth_or_failed"] == bench.height - len(
        expected
    )
    assert batched.manifest["counts"]["multi_window"] == sum(
        len(w) > 1 for w, g in zip(bench["windows"], bench["has_gt"], strict=True) if g
    )

    empty = tmp_path / "empty"
    empty.mkdir()
    bench.with_columns(pl.lit(False).alias("has_gt")).write_parquet(empty / "test.parquet")
    with pytest.raises(ValueError, match="nothing to export"):
        export(empty, "lmms-eval", tmp_path / f"none{suffix}", synthetic_root / "videos")
    assert not list(tmp_path.glob("none*")) and not list(tmp_path.glob(".none*"))


def test_tvg_r1_exports_grounded_questions_as_its_multiple_choice_items(tmp_path, synthetic_root):
    """Grounded QA rows go out as TVG-R1's multiple-choice items (letter answer, "(A) ..." choices)
    in a file of their own, trained with its ``tvg`` score; grounding rows stay grounding rows."""
    import pyarrow.parquet as pq

    from vtg_data.grounding.paper_rewards import tvg_mc_reward

    base = pl.read_parquet(synthetic_root / "normalized/synthetic/test.parquet").head(3)
    options = ["a dog runs", "a cat sleeps", "a bird sings", "a fish swims"]
    extras = [
        json.dumps({"options": options, "ans": "C"}),
        json.dumps({"options": options, "answer": "a cat sleeps"}),
        "{}",
    ]
    tasks = ["grounded_qa", "grounded_qa", "moment_retrieval"]
    table = base.with_columns(pl.Series("extra", extras), pl.Series("task", tasks))
    (tmp_path / "mixed").mkdir()
    pq.write_table(table.to_arrow(), tmp_path / "mixed" / "test.parquet")
    out = tmp_path / "mixed.json"
    result = export(tmp_path / "mixed", "tvg-r1", out, synthetic_root / "videos")
    grounding = tvg_r1_load(tmp_path / "mixed.tvg-r1.yaml")
    choices = tvg_r1_load(tmp_path / "mixed.choice.tvg-r1.yaml")
    assert [item["uid"] for item in grounding] == [table["uid"][2]] and result.rows == 3
    assert [item["ground_truth"] for item in choices] == ["C", "B"]
    item = choices[0]
    assert item["choices"] == ["(A) a dog runs", "(B) a cat sleeps", "(C) a bird sings", "(D) a fish swims"]
    problem = item["problem"] + " ".join(item["choices"])  # TVG-R1's loader
    assert problem.startswith(table["query"][0] + " (A) a dog runs")
    window = item["gt_frame"]
    perfect = f"<think>x</think> <time>[{fmt(window[0])}, {fmt(window[1])}]</time> \\boxed{{C}}"
    assert tvg_mc_reward(perfect, window, item["video_length"], item["ground_truth"])[
        "total"
    ] == pytest.approx(1.0)
    launch = result.manifest["multiple_choice"]["launch"]
    assert "compute_score=tvg " in launch and "\\boxed" in launch and "tvgonly" in result.manifest["launch"]
