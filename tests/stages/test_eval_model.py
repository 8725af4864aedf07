"""`vtg-data eval --model`: inference, scoring, eval card, resume, failures."""

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from vtg_data.cli import app
from vtg_data.lvlm import GenerationParams
from vtg_data.stages.evaluate_model import ModelEvalConfig, run_model_eval
from vtg_data.video import SamplingPolicy

pytest.importorskip("transformers")
POLICY = SamplingPolicy(fps=1.0, max_frames=8, min_pixels=28 * 28, max_pixels=56 * 56)


def config(synthetic_root, out, **changes):
    base = {
        "model": "tiny",
        "data": (synthetic_root / "normalized/synthetic/train.parquet",),
        "out": out,
        "policy": POLICY,
        "generation": GenerationParams(max_tokens=12),
        "bootstrap": 50,
    }
    return ModelEvalConfig(**(base | changes))


class Recording:
    """Wraps a real backend: records what is asked, can stop after some answers (a crash)."""

    def __init__(self, inner, crash_after=None):
        self.inner, self.crash_after, self.asked = inner, crash_after, []
        self.identity, self.decode_backend = inner.identity, inner.decode_backend

    def generate(self, requests, params, on_response=None):
        self.asked += [r.uid for r in requests]
        for count, response in enumerate(self.inner.generate(requests, params, on_response), start=1):
            yield response
            if self.crash_after is not None and count >= self.crash_after:
                raise KeyboardInterrupt


def test_cli_runs_the_tiny_model_and_writes_predictions_metrics_and_card(
    synthetic_root, tiny_model, tmp_path
):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, [
        "eval", "--model", str(tiny_model), "--data", str(synthetic_root / "normalized/synthetic/test.parquet"),
        "--out", str(out), "--fps", "1", "--max-frames", "8", "--min-pixels", "784", "--max-pixels", str(56 * 56), "--max-tokens", "8",
        "--bootstrap", "20",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(synthetic_root / "normalized/synthetic/test.parquet")
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["uid"] for p in predictions] == rows["uid"].to_list()
    assert all(
        p["status"] == "ok" and len(p["texts"]) == 1 and p["video"]["first"] == 0.0 for p in predictions
    )
    metrics = json.loads((out / "metrics.json").read_text())
    card = metrics["card"]
    assert card["model"]["backend"] == "hf" and card["model"]["revision"].startswith("local-")
    assert card["prompt"]["name"] == "tvg_r1_think" and len(card["prompt"]["hash"]) == 16
    assert card["parse_mode"] == "strict" and card["hit_rule"] == ">=" and card["sampling"]["fps"] == 1.0
    assert card["decoder"] == "auto" and card["data"][0]["sha256"]
    assert set(card["backend_notes"]["clips_by_decoder"]) <= {"decord", "torchcodec", "ffmpeg"}
    assert metrics["counts"]["rows"] == rows.height == metrics["counts"]["scored"]
    assert metrics["counts"]["parse_failures"] == sum(p["parse_status"] != "ok" for p in predictions)
    assert (out / "metrics.md").is_file()


def test_a_crashed_run_resumes_without_repeating_answers(synthetic_root, hf_backend, tmp_path):
    uninterrupted = run_model_eval(config(synthetic_root, tmp_path / "a"), backend=Recording(hf_backend))
    crashing = Recording(hf_backend, crash_after=5)
    with pytest.raises(KeyboardInterrupt):
        run_model_eval(config(synthetic_root, tmp_path / "b"), backend=crashing)
    assert len((tmp_path / "b/predictions.jsonl").read_text().splitlines()) >= 5
    resumed = Recording(hf_backend)
    result = run_model_eval(config(synthetic_root, tmp_path / "b"), backend=resumed)
    assert not set(resumed.asked) & set(crashing.asked[:5])
    assert len(resumed.asked) == uninterrupted.counts["rows"] - 5
    assert result.metrics == uninterrupted.metrics
    again = Recording(hf_backend)
    run_model_eval(config(synthetic_root, tmp_path / "b"), backend=again)
    assert again.asked == []  # nothing changed: nothing asked
    changed = Recording(hf_backend)
    run_model_eval(config(synthetic_root, tmp_path / "b", prompt="time_only"), backend=changed)
    assert len(changed.asked) == uninterrupted.counts["rows"]  # a new prompt invalidates every answer


def test_failed_requests_are_counted_not_scored_and_retried(synthetic_root, tiny_model, tmp_path):
    pytest.importorskip("httpx")
    from vllm_server import VLLMServer

    from vtg_data.lvlm.openai_http import OpenAIBackend

    rows = pl.read_parquet(synthetic_root / "normalized/synthetic/test.parquet")
    victim = rows["query"][0]
    with VLLMServer(
        tiny_model, media_io_kwargs={"video": {"num_frames": -1}}, trust_request_mm_kwargs=True
    ) as server:
        server.broken.add(victim)
        client = OpenAIBackend(
            "tiny", base_url=server.url, retries=1, backoff=0.01, timeout=60, concurrency=2
        )
        cfg = config(
            synthetic_root, tmp_path / "o", data=(synthetic_root / "normalized/synthetic/test.parquet",)
        )
        first = run_model_eval(cfg, backend=client)
        assert (
            first.counts["failed"] == (rows["query"] == victim).sum()
            and first.counts["scored"] == rows.height - first.counts["failed"]
        )
        assert "gave up" in next(iter(first.detail["failed"].values()))
        server.broken.clear()
        before = dict(server.attempts)
        second = run_model_eval(cfg, backend=client)
        assert second.counts["failed"] == 0 and second.counts["scored"] == rows.height
        asked_again = {q: server.attempts[q] - before.get(q, 0) for q in server.attempts}
        assert {q for q, k in asked_again.items() if k} == {victim}


def test_answer_budget_defaults_to_the_prompts_needs(tmp_path):
    data = (tmp_path / "t.parquet",)
    think = ModelEvalConfig(model="m", data=data, out=tmp_path, prompt="tvg_r1_think")
    short = ModelEvalConfig(model="m", data=data, out=tmp_path, prompt="time_only")
    assert think.generation.max_tokens == 2048 and short.generation.max_tokens == 256
    chosen = ModelEvalConfig(model="m", data=data, out=tmp_path, generation=GenerationParams(max_tokens=77))
    assert chosen.generation.max_tokens == 77


def test_eval_card_records_the_answer_budget(synthetic_root, tmp_path, hf_backend):
    result = run_model_eval(config(synthetic_root, tmp_path / "run", limit=2), backend=hf_backend)
    assert result.card["generation"]["max_tokens"] == 12 and result.card["prompt_answer_budget"] == 2048
