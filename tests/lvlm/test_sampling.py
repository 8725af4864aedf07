"""One explicit sampling distribution: the tiny checkpoint carries Qwen2.5-VL-7B-Instruct's
generation_config.json (top_k 1, top_p 0.001, repetition_penalty 1.05, temperature 0.1), and none
of it may reach a sampled rollout."""

import json
import warnings

import pytest
from videos import timecode_video

from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm import GenerationParams, Request
from vtg_data.lvlm.sampling import SeededSampler, filtered_scores, policy_logprobs
from vtg_data.video import SamplingPolicy

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

POLICY = SamplingPolicy(fps=2.0, max_frames=8, min_pixels=28 * 28, max_pixels=56 * 112)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return timecode_video(tmp_path_factory.mktemp("sampling") / "v.mp4", duration=3.0)


def request(uid, video, query="a person waves."):
    return Request(uid, get_prompt("tvg_r1_think").messages(query), str(video), POLICY)


def test_k_rollouts_differ_although_the_checkpoint_says_top_k_1(hf_backend, tiny_model, video):
    shipped = json.loads((tiny_model / "generation_config.json").read_text())
    assert (shipped["top_k"], shipped["top_p"], shipped["repetition_penalty"]) == (1, 0.001, 1.05)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (response,) = hf_backend.generate(
            [request("a", video)], GenerationParams(n=8, temperature=1.0, max_tokens=12)
        )
    assert len(set(response.texts)) == 8
    said = [str(w.message) for w in caught if "generation_config.json" in str(w.message)]
    assert len(said) <= 1  # said once per model (an earlier test of the session may have said it)
    if said:
        assert "top_k=1" in said[0] and "top_k off" in said[0]
    assert hf_backend.backend_notes()["checkpoint_generation_config_ignored"]["top_k"] == 1


def test_the_same_seed_gives_the_same_rollouts_and_another_seed_others(hf_backend, video):
    params = GenerationParams(n=4, temperature=1.0, max_tokens=10, seed=11)
    (first,) = hf_backend.generate([request("a", video)], params)
    (again,) = hf_backend.generate([request("a", video)], params)
    (other,) = hf_backend.generate(
        [request("a", video)], GenerationParams(n=4, temperature=1.0, max_tokens=10, seed=12)
    )
    assert first.texts == again.texts and first.texts != other.texts


def test_a_rows_draws_do_not_depend_on_the_other_rows_of_the_batch():
    torch.manual_seed(0)
    scores = torch.randn(6, 50)
    params = GenerationParams(temperature=1.0)
    together = SeededSampler(params, [1, 2, 3, 4, 5, 6])
    alone = SeededSampler(params, [4, 5, 6])
    for _ in range(20):  # twenty decoding steps; the rows keep their own streams
        both = together(None, scores).argmax(-1)
        mine = alone(None, scores[3:]).argmax(-1)
        assert torch.equal(both[3:], mine)


def test_the_sampler_draws_from_the_distribution_the_trainer_scores():
    torch.manual_seed(1)
    logits = torch.randn(1, 12) * 2
    suppressed = (3,)
    scores = logits.masked_fill(
        torch.arange(12) == 3, float("-inf")
    )  # generate's suppression, before the draw
    sampler = SeededSampler(GenerationParams(temperature=0.6), list(range(20000)))
    drawn = sampler(None, scores.expand(20000, -1).clone()).argmax(-1)
    frequencies = torch.bincount(drawn, minlength=12).double() / 20000
    expected = policy_logprobs(logits, 0.6, suppressed).exp()[0].double()
    assert torch.allclose(frequencies, expected, atol=0.012)
    assert frequencies[3] == 0 and expected[3] == 0


@pytest.mark.parametrize(
    ("changes", "kept"),
    [
        ({"top_k": 1}, {0}),
        ({"top_p": 0.001}, {0}),
        ({"top_p": 0.6}, {0, 1}),  # 0.5 is not yet 0.6: the second token joins
        ({"top_k": 3}, {0, 1, 2}),
        ({"min_p": 0.3}, {0, 1}),  # 0.2 / 0.5 >= 0.3, 0.15 / 0.5 < 0.3
    ],
)
def test_truncations_keep_the_tokens_vllm_and_transformers_keep(changes, kept):
    probs = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]])
    weights = filtered_scores(probs.log(), GenerationParams(temperature=1.0, **changes))
    assert set(torch.isfinite(weights[0]).nonzero().flatten().tolist()) == kept
