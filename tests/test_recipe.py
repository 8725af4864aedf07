"""The demo's recipe end to end, made small: every stage runs and hands its output to the next."""

import json

import pytest

from vtg_data.grounding.simulated_teacher import write_simulated_traces

pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(900)


def test_simulated_teacher_is_wider_than_the_truth(tmp_path):
    rows = [
        {"uid": f"u{i}", "query": "When is the screen red?", "duration": 20.0, "windows": [[8.0, 12.0]]}
        for i in range(50)
    ]
    ious = write_simulated_traces(rows, tmp_path / "t.jsonl", widen=2.0, noise=0.0)
    assert list(ious.values()) == pytest.approx([4 / 8] * 50) and set(ious) == {f"u{i}" for i in range(50)}
    first = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert (
        first["response"] == "<think>red from 6s to 14s</think> <time>[6, 14]</time>"
        and "simulated" in first["teacher"]
    )


def test_recipe_smoke(tmp_path):
    from vtg_data.recipe import RecipeConfig, run_recipe

    result = run_recipe(
        RecipeConfig(root=tmp_path, n_videos=16, sft_steps=6, rl_steps=2, k=2), say=lambda *_: None
    )
    scores = result["held_out_mIoU"]
    assert set(scores) == {
        "untrained",
        "mean window",
        "mean relative window",
        "teacher labels",
        "SFT on teacher",
        "SFT + GRPO",
    }
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert 0.3 < scores["teacher labels"] < 0.8  # widened by 2 s each side
    assert result["coldstart_funnel"]["in"] > 0
    over_sft = result["gains"]["over SFT"]
    assert over_sft["gain"] == pytest.approx(scores["SFT + GRPO"] - scores["SFT on teacher"])
    assert over_sft["lo"] <= over_sft["gain"] <= over_sft["hi"] and over_sft["queries"] > 0
    # every predictor's per-video IoUs, same videos in the same order: their means are the table's
    ious = result["held_out_ious"]
    assert {len(v) for v in ious.values()} == {over_sft["queries"]}
    for name in ("teacher labels", "SFT on teacher", "SFT + GRPO"):
        assert sum(ious[name]) / len(ious[name]) == pytest.approx(scores[name])
    assert (tmp_path / "hub/tvg-rl/README.md").is_file() and (tmp_path / "grpo/metrics.jsonl").is_file()


def test_findings_arms_smoke(tmp_path):
    """Every arm of the findings harness runs on one small seed: the random set has the difficulty
    set's size, the unfiltered cold start keeps at least what the filtered one keeps, and each arm
    gets one IoU per held-out video."""
    from vtg_data.findings import FindingsConfig, run_findings
    from vtg_data.recipe import RecipeConfig

    result = run_findings(
        FindingsConfig(RecipeConfig(root=tmp_path, n_videos=16, sft_steps=6, rl_steps=2, k=2)),
        say=lambda *_: None,
    )
    sizes, coldstart = result["rl_sets"], result["coldstart"]
    assert sizes["B"] == sizes["C"] == sizes["D"] > 0 and result["rl_pool"] >= sizes["B"]
    assert coldstart["unfiltered"] >= coldstart["filtered"] and coldstart["traces"] >= coldstart["unfiltered"]
    ious = result["held_out_ious"]
    assert set(ious) == {"A", "B", "C", "D", "teacher labels"}
    assert len({len(v) for v in ious.values()}) == 1 and len(ious["A"]) > 0
    assert set(result["gains"]) == {
        "RL after SFT",
        "RL past the teacher's labels",
        "difficulty control",
        "cold-start curation",
    }
    rl_c = json.loads((tmp_path / "rl-C" / "manifest.json").read_text())
    assert rl_c["config"]["policies"] == ["random"]
