"""``vllm serve`` itself (vLLM 0.32, CPU build) started with each of README's launch lines, and the
stages that call a model through it: eval, score-difficulty and a cold start with an openai teacher."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("vllm")
pytestmark = pytest.mark.timeout(1800)

from conftest import SMALL  # noqa: E402
from real_vllm import served, serving_lines, vtg_data  # noqa: E402


def lines_by_model() -> list[str]:
    lines = serving_lines()
    assert len(lines) == 3, lines  # Qwen2.5-VL, Qwen3-VL Instruct, Qwen3-VL Thinking
    return lines


@pytest.mark.parametrize("line", lines_by_model(), ids=["qwen2.5-vl", "qwen3-vl", "qwen3-vl-thinking"])
def test_readme_launch_line_serves_eval_difficulty_and_a_cold_start(line, corpus, qwen25, qwen3, tmp_path):
    model_dir = qwen3 if "Qwen3-VL" in line else qwen25
    thinking = "--reasoning-parser" in line
    table, videos = str(corpus / "three.parquet"), str(corpus / "videos")
    with served(line, model_dir, tmp_path) as server:
        through = ["--base-url", server.url, *SMALL]
        client = ["--backend", "openai", *through]
        evaluated = vtg_data("eval", "--model", server.name, "--data", table, "--video-root", videos,
                             "--out", str(tmp_path / "eval"), "--prompt", "compact_think", "--max-tokens", "24",
                             *client)  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
        card = json.loads((tmp_path / "eval/metrics.json").read_text())
        assert card["counts"]["rows"] == 3 and card["counts"]["scored"] == 3, card["counts"]
        checks = card["card"]["backend_notes"]["server_check"]["exact_checks"]
        assert checks and all(check["ok"] for check in checks), checks  # every frame shown, at its size
        predictions = [
            json.loads(line) for line in (tmp_path / "eval/predictions.jsonl").read_text().splitlines()
        ]
        assert all(p["prompt_tokens"] > p["video"]["frames"] for p in predictions)
        if thinking:  # the reasoning parser split the thinking off; the client joined it back
            assert all(p["texts"][0].startswith("<think>") for p in predictions)

        scored = vtg_data("score-difficulty", "--model", server.name, "--data", table, "--video-root", videos,
                          "--out", str(tmp_path / "difficulty"), "-k", "4", "--temperature", "1.0",
                          "--max-tokens", "12", "--prompt", "compact", *client)  # fmt: skip
        assert scored.returncode == 0, scored.stdout + scored.stderr
        manifest = json.loads((tmp_path / "difficulty/manifest.json").read_text())
        assert manifest["counts"]["scored"] == 3 and manifest["failures"] == []
        calls = [
            json.loads(x)
            for x in (tmp_path / "difficulty/calls").glob("*.jsonl").__next__().read_text().splitlines()
        ]
        rollouts = [c for c in calls if len(c.get("texts", [])) == 4]
        assert rollouts and all(len(set(c["texts"])) == 4 for c in rollouts)  # k samples, not k copies

        built = vtg_data("build", "coldstart", "--data", table, "--video-root", videos, "--out",
                         str(tmp_path / "coldstart"), "--teacher-model", server.name, "--teacher-backend", "openai",
                         "--k", "2", "--temperature", "1.0", "--max-tokens", "24", *through)  # fmt: skip
        assert built.returncode == 0, built.stdout + built.stderr
        manifest = json.loads((tmp_path / "coldstart/manifest.json").read_text())
        assert manifest["counts"]["generation_failed"] == 0 and manifest["counts"]["traces"] == 6
        assert manifest["failures"] == []


def test_without_the_trust_flag_eval_stops_at_once_and_the_stand_in_refuses_alike(corpus, qwen25, tmp_path):
    """vLLM 0.32 as it ships refuses the client's per-request kwargs: eval stops at the first answer
    with the flag to add and exits non-zero. The stand-in launched the same way answers the same
    bodies with the same status, error type, parameter and message."""
    import httpx
    from vllm_server import VLLMServer

    line = lines_by_model()[0].replace(" --trust-request-mm-kwargs", "")
    body = {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2}  # fmt: skip
    variants = [
        body | {"mm_processor_kwargs": {"fps": 2.0}},
        body | {"media_io_kwargs": {"video": {"num_frames": -1}}},
    ]
    with served(line, qwen25, tmp_path) as real, VLLMServer.launched(line, qwen25) as standin:
        result = vtg_data("eval", "--model", real.name, "--data", str(corpus / "three.parquet"),
                          "--video-root", str(corpus / "videos"), "--out", str(tmp_path / "eval"), "--backend",
                          "openai", "--base-url", real.url, "--concurrency", "1", "--max-tokens", "8", *SMALL)  # fmt: skip
        refusals = real.log.read_text().count('"POST /v1/chat/completions HTTP/1.1" 400')
        answers = [httpx.post(url + "/chat/completions", json=v, timeout=120) for url in (real.url, standin.url)
                   for v in variants]  # fmt: skip
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "--trust-request-mm-kwargs" in output and "mm_processor_kwargs are disabled" in output
    assert refusals == 1  # stopped at the first refusal, not one per row
    assert [a.status_code for a in answers] == [400, 400, 400, 400]
    real_errors, standin_errors = (
        [a.json()["error"] for a in answers[:2]],
        [a.json()["error"] for a in answers[2:]],
    )
    for ours, theirs in zip(standin_errors, real_errors, strict=True):
        assert (ours["message"], ours["type"], ours["param"], ours["code"]) == (
            theirs["message"], theirs["type"], theirs["param"], theirs["code"])  # fmt: skip
