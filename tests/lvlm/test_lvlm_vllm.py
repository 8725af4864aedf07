"""The vLLM backend. vLLM is an optional extra in its own environment: the engine test runs where
it is installed (with a GPU); the install hint is checked everywhere."""

import importlib.util

import pytest
from videos import timecode_video

from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm import GenerationParams, Request, make_backend
from vtg_data.video import SamplingPolicy

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_missing_vllm_names_the_extra_to_install():
    with pytest.raises(ImportError, match=r"pip install 'vtg-data\[vllm\]'"):
        make_backend("vllm", "any-model")


@pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (optional extra, own environment)")
def test_vllm_engine_answers_n_samples_with_the_tiny_model(tiny_model, tmp_path):
    video = timecode_video(tmp_path / "v.mp4", duration=3.0)
    backend = make_backend("vllm", str(tiny_model), max_model_len=4096, gpu_memory_utilization=0.3)
    policy = SamplingPolicy(fps=2.0, max_frames=8, min_pixels=28 * 28, max_pixels=56 * 56)
    requests = [
        Request(f"u{i}", get_prompt("tvg_r1_think").messages(f"query {i}"), str(video), policy)
        for i in range(3)
    ]
    requests.append(
        Request("bad", get_prompt("tvg_r1_think").messages("x"), str(tmp_path / "missing.mp4"), policy)
    )
    responses = {
        r.uid: r for r in backend.generate(requests, GenerationParams(n=4, temperature=1.0, max_tokens=8))
    }
    assert all(responses[f"u{i}"].ok and len(responses[f"u{i}"].texts) == 4 for i in range(3))
    assert responses["bad"].status == "failed"
    assert responses["u0"].video["first"] == 0.0
