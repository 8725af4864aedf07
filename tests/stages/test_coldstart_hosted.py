"""A cold start written by a hosted teacher, as TVG-R1's was by Gemini: through the real google-genai
client against the loopback Gemini API, with its thoughts kept, tokens and cost recorded, a dry
run's projection, a budget, and a kill -9 in the middle."""

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from gemini_server import GeminiServer
from typer.testing import CliRunner

from vtg_data.cli import app

pytest.importorskip("google.genai")
FRAMES = ["--fps", "1", "--max-frames", "8"]


@pytest.fixture(scope="module")
def rows(synthetic_root):
    table = pl.read_parquet(synthetic_root / "normalized/synthetic/train.parquet")
    return {row["uid"]: row for row in table.iter_rows(named=True)}


def teacher(rows, delay: float = 0.0):
    """Gemini's answers for the double: reasoning about the annotated moment, the moment itself."""

    def respond(record, seed):
        time.sleep(delay)
        row = next(r for r in rows.values() if r["query"] in record["query"])
        s, e = row["windows"][0]
        shift = (seed % 3) * 0.1
        thought = (
            f"The scene changes at {s + shift:.1f}s, where the event begins; it lasts until {e + shift:.1f}s."
        )
        return thought, f"<time>[{s + shift:.1f}, {e + shift:.1f}]</time>"

    return respond


def args(synthetic_root, server, out, *more):
    return ["build", "coldstart", "--data", str(synthetic_root / "normalized/synthetic/train.parquet"),
            "--out", str(out), "--teacher-model", "gemini-2.5-pro", "--teacher-backend", "gemini",
            "--base-url", server.url, "--k", "2", "--temperature", "1.0", "--max-tokens", "256", *FRAMES, *more]  # fmt: skip


def test_gemini_teacher_thoughts_usage_cost_and_named_failures(synthetic_root, rows, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    blocked = next(iter(rows.values()))
    with GeminiServer(responder=teacher(rows)) as server:
        server.faults[None] = []
        prompt_of = {}  # the teacher prompt of the blocked row, found by its query
        original = server.generate

        def generate(model, body):
            text = body["contents"][-1]["parts"][-1]["text"]
            if blocked["query"] in text:
                server.faults.setdefault(text, ["safety", "safety", "safety"])
                prompt_of["blocked"] = text
            return original(model, body)

        server.generate = generate
        result = CliRunner().invoke(
            app, args(synthetic_root, server, tmp_path / "cs", "--thinking-budget", "1024")
        )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "cs/manifest.json").read_text())
    assert manifest["teacher"]["backend"] == "gemini" and manifest["counts"]["generation_failed"] == 1
    assert manifest["failures"] == [{"reason": "gemini: answer blocked (SAFETY)", "count": 1,
                                     "first_uid": blocked["uid"], "first_message": "gemini: answer blocked (SAFETY)"}]  # fmt: skip
    usage = manifest["teacher_usage"]
    assert usage["calls"] == len(rows) - 1 and usage["prompt_tokens"] > 0 and usage["thought_tokens"] > 0
    price = usage["price"]
    assert (price["input_per_million"], price["output_per_million"]) == (1.25, 10.0)
    expected = (
        usage["prompt_tokens"] * 1.25 + (usage["output_tokens"] + usage["thought_tokens"]) * 10.0
    ) / 1e6
    assert usage["cost_usd"] == pytest.approx(expected, abs=1e-6)
    assert manifest["teacher_backend_notes"]["videos"]["inline"] > 0
    assert all(s["config"]["thinkingConfig"]["thinking_budget"] == 1024 for s in server.seen)
    traces = [json.loads(line) for line in (tmp_path / "cs/traces.jsonl").read_text().splitlines()]
    kept = [t for t in traces if t["status"] == "ok"]
    assert all(text.startswith("<think>The scene changes") for t in kept for text in t["texts"])
    assert manifest["counts"]["rows"] > 0  # the funnel accepted thought-through traces
    assert "teacher: " in result.output and " USD" in result.output
    assert "test-key" not in (tmp_path / "cs/manifest.json").read_text() + result.output


def test_dry_run_projects_the_table_and_the_full_run_pays_only_for_the_rest(
    synthetic_root, rows, tmp_path, monkeypatch
):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    out = tmp_path / "cs"
    with GeminiServer(responder=teacher(rows)) as server:
        dry = CliRunner().invoke(app, args(synthetic_root, server, out, "--dry-run", "2", "--price-input", "2",
                                           "--price-output", "8"))  # fmt: skip
        assert dry.exit_code == 0, dry.output
        report = json.loads((out / "dry_run.json").read_text())
        assert report["samples_asked"] == 2 and report["answered"] == 2 and len(server.seen) == 2
        per, projected = report["per_sample"], report["projected"]
        assert projected["prompt_tokens"] == round(per["prompt_tokens"] * len(rows))
        cost = (
            projected["prompt_tokens"] * 2 + (projected["output_tokens"] + projected["thought_tokens"]) * 8
        ) / 1e6
        assert projected["cost_usd"] == pytest.approx(cost, abs=0.01)
        assert (
            "dry run: 2 of 2 samples" in " ".join(dry.output.split()) and not (out / "manifest.json").exists()
        )
        full = CliRunner().invoke(
            app, args(synthetic_root, server, out, "--price-input", "2", "--price-output", "8")
        )
        assert full.exit_code == 0, full.output
        assert len(server.seen) == len(rows)  # the dry run's two answers were not asked again
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["teacher_usage"]["calls"] == len(rows)


def test_a_budget_stops_cleanly_and_a_rerun_continues(synthetic_root, rows, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    out = tmp_path / "cs"
    with GeminiServer(responder=teacher(rows)) as server:
        # about 0.002 USD a call at these prices: a budget of 0.005 stops after the third answer
        stopped = CliRunner().invoke(app, args(synthetic_root, server, out, "--price-input", "1000", "--price-output",
                                               "1000", "--budget", "0.005", "--concurrency", "1"))  # fmt: skip
        assert stopped.exit_code == 1 and "budget reached" in " ".join(stopped.output.split())
        saved = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
        assert 0 < len(saved) < len(rows) and len(server.seen) == len(saved)  # every paid answer saved
        resumed = CliRunner().invoke(app, args(synthetic_root, server, out, "--price-input", "1000",
                                               "--price-output", "1000", "--budget", "100"))  # fmt: skip
        assert resumed.exit_code == 0, resumed.output
        assert len(server.seen) == len(rows)  # nothing asked twice
    assert json.loads((out / "manifest.json").read_text())["counts"]["traces"] == 2 * len(rows)


def test_kill_9_midway_then_rerun_loses_and_repeats_nothing(synthetic_root, rows, tmp_path):
    out = tmp_path / "cs"
    env = {**os.environ, "GEMINI_API_KEY": "test-key"}
    with GeminiServer(responder=teacher(rows, delay=0.3)) as server:
        process = subprocess.Popen([sys.executable, "-m", "vtg_data.cli", *args(synthetic_root, server, out, "--concurrency", "1")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)  # fmt: skip
        cache = out / "traces.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            not cache.is_file() or len(cache.read_text().splitlines()) < 2
        ):
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        before = {
            json.loads(line)["uid"] for line in cache.read_text().splitlines() if line.strip().endswith("}")
        }
        assert 2 <= len(before) < len(rows) and not (out / "manifest.json").exists()
        rerun = subprocess.run([sys.executable, "-m", "vtg_data.cli", *args(synthetic_root, server, out)],
                               capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        asked = [s["query"] for s in server.seen]
    answers = [json.loads(line) for line in cache.read_text().splitlines() if line.strip().endswith("}")]
    ok = [a["uid"] for a in answers if a["status"] == "ok"]
    assert sorted(set(ok)) == sorted(rows) and len(ok) == len(rows)  # every row once
    # only the one answer in flight at the kill (concurrency 1) may have been asked twice
    assert len(rows) <= len(asked) <= len(rows) + 1


def test_an_openai_style_hosted_teacher_sees_frames_as_timed_images(
    synthetic_root, rows, tmp_path, monkeypatch
):
    from openai_api_server import OpenAIAPIServer

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    def respond(record, n):
        row = next(r for r in rows.values() if r["query"] in record["query"])
        s, e = row["windows"][0]
        return [f"<think>The scene changes at {s:.1f}s, where the event begins; it lasts until {e:.1f}s.</think> "
                f"<time>[{s:.1f}, {e:.1f}]</time>"] * n  # fmt: skip

    with OpenAIAPIServer(responder=respond) as server:
        result = CliRunner().invoke(app, [
            "build", "coldstart", "--data", str(synthetic_root / "normalized/synthetic/train.parquet"),
            "--out", str(tmp_path / "cs"), "--teacher-model", "gpt-4o-mini", "--teacher-backend", "openai",
            "--base-url", server.url, "--video-mode", "images", "--api-fields", "standard", "--image-detail", "low",
            "--max-tokens", "256", *FRAMES])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "cs/manifest.json").read_text())
    assert manifest["counts"]["generation_failed"] == 0 and manifest["counts"]["rows"] > 0
    usage = manifest["teacher_usage"]
    assert usage["calls"] == len(rows) and usage["price"]["input_per_million"] == 0.15
    assert usage["prompt_tokens"] >= len(rows) * 4 * 85  # at least 4 low-detail frames per video
    notes = manifest["teacher_backend_notes"]
    assert notes["video_mode"] == "images" and notes["server_check"]["unchecked_reason"].startswith(
        "images mode"
    )
    assert all(image["label"].endswith(" s") for s in server.seen for image in s["images"])
