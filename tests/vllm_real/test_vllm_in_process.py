"""vLLM's engine in the process (vLLM 0.32, CPU build): ``eval`` and ``score-difficulty`` with
``--backend vllm``, and GRPO sampling its rollouts from an engine synced with the trainer's weights
every step, with data-loading workers and without."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("vllm")
pytestmark = pytest.mark.timeout(1800)

from conftest import SMALL  # noqa: E402
from real_vllm import ENGINE_OPTIONS, vtg_data  # noqa: E402

ENGINE = ["--vllm-options", json.dumps(ENGINE_OPTIONS)]


def test_eval_and_score_difficulty_with_the_in_process_engine(corpus, qwen25, tmp_path):
    table, videos = str(corpus / "three.parquet"), str(corpus / "videos")
    evaluated = vtg_data("eval", "--model", str(qwen25), "--backend", "vllm", *ENGINE, "--data", table,
                         "--video-root", videos, "--out", str(tmp_path / "eval"), "--prompt", "compact_think",
                         "--max-tokens", "24", *SMALL)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    card = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert card["counts"]["scored"] == 3 and card["card"]["model"]["backend"] == "vllm"
    predictions = [json.loads(x) for x in (tmp_path / "eval/predictions.jsonl").read_text().splitlines()]
    assert all(p["prompt_tokens"] > 0 and p["video"]["frames"] >= 4 for p in predictions)

    scored = vtg_data("score-difficulty", "--model", str(qwen25), "--backend", "vllm", *ENGINE, "--data", table,
                      "--video-root", videos, "--out", str(tmp_path / "difficulty"), "-k", "4", "--temperature",
                      "1.0", "--max-tokens", "12", "--prompt", "compact", *SMALL)  # fmt: skip
    assert scored.returncode == 0, scored.stdout + scored.stderr
    manifest = json.loads((tmp_path / "difficulty/manifest.json").read_text())
    assert manifest["counts"]["scored"] == 3 and manifest["failures"] == []


@pytest.mark.parametrize("workers", [2, 0], ids=["with-data-workers", "without"])
def test_grpo_with_vllm_rollouts_syncs_weights_that_land(workers, corpus, qwen25, tmp_path):
    """Every sync is checked (the engine's greedy answer scored by the trainer's model); the entropy
    bonus moves the policy every step, so a sync that did not land would show."""
    out = tmp_path / "rl"
    trained = vtg_data("train", "rl", "--model", str(qwen25), "--data", str(corpus / "normalized/synthetic/train.parquet"),
                       "--video-root", str(corpus / "videos"), "--out", str(out), "--prompt", "compact",
                       "--reward", "tvg_r1_nothink", "--steps", "3", "--prompts-per-step", "2", "-k", "4",
                       "--max-tokens", "12", "--lr", "1e-2", "--entropy", "0.05", "--save-every", "0",
                       "--num-workers", str(workers), "--rollouts", "vllm", *ENGINE, "--vllm-check-sync", "every",
                       "--vllm-sync-tolerance", "1e-3", *SMALL, timeout=1200)  # fmt: skip
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"step"' in x]
    steps = [r for r in history if "sync_check" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(r["sync_route"] == "reload_weights" for r in steps)
    assert all(r["sync_check"]["largest_logprob_difference"] < 1e-3 for r in steps)
    # the engine answered with the updated policy: its log-probabilities moved with the weights
    sums = [r["sync_check"]["engine_logprob_sum"] for r in steps]
    assert abs(sums[-1] - sums[0]) > 0.05, sums
    assert json.loads((out / "config.json").read_text())["config"]["rollouts"] == "vllm"
