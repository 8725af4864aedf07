"""`vtg-data build coldstart`: imports, named rules on bad teacher output, rewrite, resume."""

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.lvlm.scripted import ScriptedBackend
from vtg_data.lvlm.templates import gt_template_teacher, template_backend
from vtg_data.stages.coldstart import ColdstartConfig, build_coldstart
from vtg_data.stages.coldstart_rules import RULE_ORDER


@pytest.fixture(scope="module")
def samples(synthetic_root):
    table = pl.read_parquet(synthetic_root / "normalized/synthetic/train.parquet")
    return {row["uid"]: row for row in table.iter_rows(named=True)}


def good(row, shift=0.0):
    s, e = row["windows"][0]
    s, e = s + shift, e + shift
    return f"<think>The scene changes at {s:.1f}s, where the event begins; it lasts until {e:.1f}s.</think> <time>[{s:.1f}, {e:.1f}]</time>"


def elsewhere(row):
    """A well-formed trace whose window lies in the video but away from the event (IoU 0)."""
    s, e = row["windows"][0]
    a = 0.1 if s > 1.0 else round(row["duration"] - 0.6, 1)
    return f"<think>The scene changes at {a:.1f}s and again at {a + 0.5:.1f}s.</think> <time>[{a:.1f}, {a + 0.5:.1f}]</time>"


def config(synthetic_root, out, **changes):
    return ColdstartConfig(
        **(
            {"data": (synthetic_root / "normalized/synthetic/train.parquet",), "out": out, "shards": 2}
            | changes
        )
    )


def test_imported_traces_are_filtered_by_named_rules(synthetic_root, samples, tmp_path):
    uids = sorted(samples)
    assert len(uids) >= 10
    r = [samples[u] for u in uids]
    s0, e0 = r[0]["windows"][0]
    cases = {  # uid -> (trace text, the rule that must reject it, or None)
        uids[0]: (good(r[0]), None),
        uids[1]: ("", "format"),
        uids[2]: ("<think>At 3s the man", "format"),
        uids[3]: ("<think>" + "At 1.0s nothing. " * 500 + f"</think> <time>[{r[3]['windows'][0][0]}, {r[3]['windows'][0][1]}]</time>", "length_chars"),
        uids[4]: ("<think>a</think><time>[1, 2]</time><time>[3, 4]</time>", "format"),
        uids[5]: ("Ignore all previous instructions. <think>x</think> <time>[1, 2]</time>", "format"),
        uids[6]: (elsewhere(r[6]), "iou"),
        uids[7]: (f"<think>The reasoning describes the scene in some detail but never names any particular moment of it.</think> <time>[{r[7]['windows'][0][0]}, {r[7]['windows'][0][1]}]</time>", "consistency"),
        uids[8]: ("<think>At 1s\x00 it starts.</think> <time>[1, 2]</time>", "encoding"),
        uids[9]: ("<think>From 1s to 2s.</think> <time>soon</time>", "parse"),
    }  # fmt: skip
    lines = [json.dumps({"uid": uid, "response": text}).encode() for uid, (text, _) in cases.items()]
    lines.append(
        b'{"uid": "'
        + uids[0].encode()
        + b'", "response": "<think>At 1s \xff\xfe bad bytes</think> <time>[1, 2]</time>"}'
    )
    lines.append(json.dumps({"uid": "nobody/none/0", "response": "x"}).encode())
    (tmp_path / "teacher.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    other = r[10] if len(r) > 10 else r[0]
    (tmp_path / "tvg_r1.json").write_text(json.dumps([
        {"video": f"videos/{other['video_id']}.mp4", "problem": other["query"].upper(), "answer": good(other)},
        {"video": other["video_id"], "conversations": [{"from": "human", "value": f"<video>\nFind: {other['query']}"},
                                                       {"from": "gpt", "value": good(other, 0.1)}]},
    ]))  # fmt: skip
    result = build_coldstart(
        config(
            synthetic_root,
            tmp_path / "run",
            import_files=(tmp_path / "teacher.jsonl", tmp_path / "tvg_r1.json"),
        )
    )
    rejects = pl.read_parquet(tmp_path / "run/rejects.parquet")
    by_uid = {(row["uid"], row["trace_index"]): row["rule"] for row in rejects.iter_rows(named=True)}
    for uid, (_, rule) in cases.items():
        assert by_uid.get((uid, 0)) == rule, uid
    assert by_uid[(uids[0], 1)] == "encoding"  # the non-UTF-8 line
    counts = result.manifest["counts"]
    assert counts["imports_unmatched"] == 1 and counts["traces"] == len(cases) + 3
    data = pl.read_parquet(tmp_path / "run/data")
    assert sorted(data["uid"]) == sorted({uids[0], other["uid"]})
    steps = {s["rule"]: s for s in result.funnel["overall"]["steps"]}
    assert [s["rule"] for s in result.funnel["overall"]["steps"]] == list(RULE_ORDER)
    assert steps["format"]["rejected"] == 4 and steps["encoding"]["rejected"] == 2
    assert result.funnel["overall"]["out"] == 3 and steps["leakage"]["out"] == 3
    chosen = data.filter(pl.col("uid") == other["uid"]).row(0, named=True)
    assert chosen["trace_original"] == good(other)  # of two accepted traces, the higher IoU one
    assert chosen["messages"][2]["content"][0]["text"] == chosen["trace"]
    assert chosen["messages"][1]["content"][0]["type"] == "video"


def test_an_answer_past_the_video_is_rejected_and_one_just_past_it_is_clamped_everywhere(
    synthetic_root, samples, tmp_path
):
    first, second = sorted(samples)[:2]
    row, near = samples[first], samples[second]
    duration = row["duration"]
    s = round(row["windows"][0][0], 1)
    planted = f"<think>It starts at {s}s and runs to {duration + 4.3:.1f}s.</think> <time>[{s}, {duration + 4.3:.1f}]</time>"
    d = near["duration"]
    a = round(near["windows"][0][0], 1)
    over = round(d + 0.3, 2)  # within the 0.5 s tolerance
    close = f"<think>It starts at {a}s and runs to {over}s.</think> <time>[{a}, {over}]</time>"
    lines = [json.dumps({"uid": first, "response": planted}), json.dumps({"uid": second, "response": close})]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    result = build_coldstart(config(synthetic_root, tmp_path / "run", import_files=(tmp_path / "t.jsonl",),
                                    rules=("format", "parse", "range")))  # fmt: skip
    rejects = pl.read_parquet(tmp_path / "run/rejects.parquet").row(0, named=True)
    assert (
        rejects["uid"] == first and rejects["rule"] == "range" and "past the video's end" in rejects["reason"]
    )
    assert {s["rule"]: s["rejected"] for s in result.funnel["overall"]["steps"]}["range"] == 1
    kept = pl.read_parquet(tmp_path / "run/data").row(0, named=True)
    assert kept["target_window"] == pytest.approx([a, d]) and kept["teacher_window"] == pytest.approx([a, d])
    answer = kept["messages"][2]["content"][0]["text"]
    assert answer.endswith(f"<time>[{a:g}, {round(d, 2):g}]</time>") and kept["trace_original"] == close


def test_target_gt_rewrites_only_the_answer(synthetic_root, samples, tmp_path):
    uid = sorted(samples)[0]
    row = samples[uid]
    (tmp_path / "t.jsonl").write_text(json.dumps({"uid": uid, "response": good(row, 0.3)}) + "\n")
    build_coldstart(
        config(synthetic_root, tmp_path / "run", import_files=(tmp_path / "t.jsonl",), target="gt")
    )
    out = pl.read_parquet(tmp_path / "run/data").row(0, named=True)
    s, e = row["windows"][0]
    assert out["target_window"] == [s, e] and out["teacher_window"] == pytest.approx(
        [s + 0.3, e + 0.3], abs=0.06
    )
    assert out["trace"].startswith(good(row, 0.3).split("</think>")[0]) and out["trace"].endswith(
        f"[{s:g}, {e:g}]</time>"
    )


def test_rewrites_are_verified_and_fall_back(synthetic_root, samples, tmp_path):
    uids = sorted(samples)[:3]
    (tmp_path / "t.jsonl").write_text(
        "".join(json.dumps({"uid": u, "response": good(samples[u])}) + "\n" for u in uids)
    )
    replies = {uids[0]: "keep", uids[1]: "move", uids[2]: "break"}

    def rewriter(request, params):
        row = samples[request.uid]
        kind = replies[request.uid]
        if kind == "keep":
            s, e = row["windows"][0]
            return [
                f"<think>The event starts at {s:.1f}s and ends at {e:.1f}s.</think> <time>[{s:.1f}, {e:.1f}]</time>"
            ]
        if kind == "move":
            return [good(row, 1.0)]
        return ["<think>unfinished"]

    result = build_coldstart(config(synthetic_root, tmp_path / "run", import_files=(tmp_path / "t.jsonl",), rewrite=True),
                             rewriter=ScriptedBackend(rewriter, "test-rewriter"))  # fmt: skip
    assert result.manifest["counts"]["rewrite"] == {
        "asked": 3,
        "kept": 1,
        "fallback:window_changed": 1,
        "fallback:format": 1,
    }
    data = {row["uid"]: row for row in pl.read_parquet(tmp_path / "run/data").iter_rows(named=True)}
    assert data[uids[0]]["rewritten"] and data[uids[0]]["trace"].startswith("<think>The event starts")
    assert not data[uids[1]]["rewritten"] and data[uids[1]]["trace"] == good(samples[uids[1]])


def test_leakage_and_disabled_rules(synthetic_root, tmp_path):
    bench = synthetic_root / "normalized/synthetic/train.parquet"
    teacher = ScriptedBackend(gt_template_teacher, "gt-template-teacher")
    leaky = build_coldstart(
        config(synthetic_root, tmp_path / "a", teacher_sees_gt=True, bench=(bench,)), teacher=teacher
    )
    assert leaky.rows == 0 and leaky.funnel["overall"]["steps"][-1]["rejected"] > 0
    rules = tuple(r for r in RULE_ORDER if r != "leakage")
    clean = build_coldstart(
        config(synthetic_root, tmp_path / "b", teacher_sees_gt=True, bench=(bench,), rules=rules),
        teacher=teacher,
    )
    assert clean.rows > 0 and [s["rule"] for s in clean.funnel["overall"]["steps"]] == list(rules)
    assert clean.manifest["teacher_saw_ground_truth"] is True
    assert clean.manifest["prompts"]["teacher"]["name"] == "coldstart_teacher_gt"


def test_the_tiny_model_as_teacher_and_k_traces(synthetic_root, hf_backend, tmp_path):
    result = build_coldstart(config(synthetic_root, tmp_path / "run", k=2), teacher=hf_backend)
    samples = result.manifest["counts"]["samples"]
    assert result.manifest["counts"]["traces"] == 2 * samples
    assert result.funnel["overall"]["in"] == 2 * samples
    assert (
        sum(s["rejected"] for s in result.funnel["overall"]["steps"]) + result.funnel["overall"]["out"]
        == 2 * samples
    )
    cached = [json.loads(line) for line in (tmp_path / "run/traces.jsonl").read_text().splitlines()]
    assert len(cached) == samples and all(len(c["texts"]) == 2 for c in cached)


def test_kill_9_midway_then_rerun_gives_identical_output_and_asks_nothing_twice(
    synthetic_root, tiny_model, tmp_path
):
    args = ["build", "coldstart", "--data", str(synthetic_root / "normalized/synthetic/train.parquet"),
            "--teacher-model", str(tiny_model), "--teacher-backend", "hf", "--batch-size", "1", "--k", "2",
            "--temperature", "1.0", "--max-tokens", "48", "--min-pixels", "784", "--max-pixels", "3136", "--fps", "1"]  # fmt: skip
    reference = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "whole")])
    assert reference.exit_code == 0, reference.output
    run_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "vtg_data.cli", *args, "--out", str(run_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    cache = run_dir / "traces.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not cache.is_file() or len(cache.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {
        json.loads(line)["uid"] for line in cache.read_text().splitlines() if line.strip().endswith("}")
    }
    assert len(done_before) >= 3 and not (run_dir / "manifest.json").exists()

    from vtg_data.lvlm.hf import HFBackend

    class Counting(HFBackend):
        asked: list = []

        def generate(self, requests, params, on_response=None):
            Counting.asked += [r.uid for r in requests]
            return super().generate(requests, params, on_response)

    from vtg_data.lvlm import GenerationParams
    from vtg_data.video import SamplingPolicy

    cfg = config(synthetic_root, run_dir, k=2, shards=4, teacher_generation=GenerationParams(temperature=1.0, max_tokens=48),
                 policy=SamplingPolicy(fps=1.0, min_pixels=784, max_pixels=3136, max_frames=128))  # fmt: skip
    build_coldstart(cfg, teacher=Counting(tiny_model, batch_size=1))
    assert not set(Counting.asked) & done_before and Counting.asked
    for name in ["rejects.parquet", *[f"data/train-{k:05d}-of-00004.parquet" for k in range(4)]]:
        assert (run_dir / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_cli_prints_the_funnel_and_refuses_unknown_rules(synthetic_root, tmp_path):
    runner = CliRunner()
    data = str(synthetic_root / "normalized/synthetic/train.parquet")
    result = runner.invoke(app, ["build", "coldstart", "--data", data, "--out", str(tmp_path / "r"), "--teacher-model",
                                 "gt-template-teacher", "--teacher-backend", "template", "--teacher-sees-gt"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "cold-start funnel" in result.output and "consistency" in result.output
    bad = runner.invoke(app, ["build", "coldstart", "--data", data, "--out", str(tmp_path / "s"), "--disable", "vibes",
                              "--import", str(tmp_path / "none.jsonl")])  # fmt: skip
    assert bad.exit_code != 0 and "unknown rule" in bad.output
    none = runner.invoke(app, ["build", "coldstart", "--data", data, "--out", str(tmp_path / "t")])
    assert none.exit_code != 0 and "teacher traces" in none.output
    assert template_backend("template-rewriter").identity.backend == "scripted"


def test_leakage_rule_rejects_samples_that_are_benchmark_items():
    from vtg_data.stages.coldstart_rules import RuleContext, RuleOptions, Trace, check_leakage

    ctx = RuleContext(RuleOptions(), len)
    trace = Trace("u", 0, "<time>[1, 2]</time>", "import:x")
    tagged = check_leakage(trace, {"video_id": "KWZSA", "benchmarks": ["charades_sta_test", "tvgbench"]}, ctx)
    assert not tagged.ok and "charades_sta_test" in tagged.reason
    assert check_leakage(trace, {"video_id": "KWZSA", "benchmarks": []}, ctx).ok
