"""The transformers backend on the tiny offline Qwen2.5-VL with real decoded videos."""

import numpy as np
import pytest
from typer.testing import CliRunner
from videos import timecode_video

from vtg_data.cli import app
from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm import GenerationParams, Request
from vtg_data.video import SamplingPolicy, sample_frames

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

POLICY = SamplingPolicy(fps=2.0, max_frames=8, min_pixels=28 * 28, max_pixels=56 * 112)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lvlm")
    return [
        timecode_video(folder / f"v{i}.mp4", fps=fps, duration=d)
        for i, (fps, d) in enumerate([("25", 3.0), ("30000/1001", 4.7)])
    ]


def request(uid, video, query="a person waves."):
    return Request(uid, get_prompt("tvg_r1_think").messages(query), str(video), POLICY)


def greedy_texts(backend, inputs, max_tokens: int) -> list[str]:
    """transformers' own greedy ``generate`` on prepared inputs: what sampling at temperature 0 must
    give. The argmax of the model's logits: the checkpoint's repetition penalty (1.05) is not asked for."""
    backend.model.model.rope_deltas = None
    with torch.inference_mode():
        reference = backend.model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                                           repetition_penalty=1.0,
                                           pad_token_id=backend.processor.tokenizer.pad_token_id)  # fmt: skip
    return backend.processor.batch_decode(
        reference[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )


def test_make_tiny_model_cli_writes_a_loadable_model(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    result = CliRunner().invoke(app, ["make-tiny-model", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    processor = AutoProcessor.from_pretrained(tmp_path / "m")
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") == model.config.video_token_id


@pytest.mark.parametrize(
    ("family", "size", "hidden", "layers"),
    [("qwen2.5-vl", "xs", 64, 2), ("qwen2.5-vl", "m", 256, 4), ("qwen3-vl", "s", 128, 2)],
)
def test_make_tiny_model_cli_writes_the_named_learning_size(tmp_path, family, size, hidden, layers):
    from transformers import AutoConfig

    out = tmp_path / size
    result = CliRunner().invoke(app, ["make-tiny-model", str(out), "--size", size, "--family", family])
    assert result.exit_code == 0, result.output
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == family.replace(".", "_").replace("-", "_")
    assert (config.text_config.hidden_size, config.text_config.num_hidden_layers) == (hidden, layers)


def test_make_tiny_model_cli_rejects_an_unknown_size(tmp_path):
    result = CliRunner().invoke(app, ["make-tiny-model", str(tmp_path / "m"), "--size", "xl"])
    assert result.exit_code != 0
    assert "size must be one of" in result.output
    assert not (tmp_path / "m").exists()


def test_processor_receives_the_true_frame_timing(hf_backend, videos):
    for video in videos:
        clip = sample_frames(video, SamplingPolicy(**{**POLICY.__dict__, "patch": hf_backend.patch}))
        inputs = hf_backend.prepare([(request("u", video), clip)])
        # Qwen2.5-VL places temporal patch t at t * second_per_grid_ts seconds
        assert inputs["second_per_grid_ts"].tolist() == pytest.approx(
            [hf_backend.temporal_patch / clip.fps], rel=1e-5
        )
        grid_t = int(inputs["video_grid_thw"][0, 0])
        patch_starts = np.arange(grid_t) * float(inputs["second_per_grid_ts"][0])
        true_starts = clip.timestamps[:: hf_backend.temporal_patch]
        assert np.abs(patch_starts - true_starts).max() <= 1.0 / clip.plan.native_fps + 1e-6
        # the metadata's own frame times (what Qwen3-VL prints as timestamps) are the decoded ones
        assert np.allclose(hf_backend.metadata(clip).timestamps, clip.timestamps, atol=1e-3)


def test_shared_prefill_gives_exactly_what_plain_generate_gives(hf_backend, videos):
    batch = [
        (request("a", videos[0]), sample_frames(videos[0], POLICY)),
        (request("b", videos[1], "the door opens."), sample_frames(videos[1], POLICY)),
    ]
    params = GenerationParams(n=3, temperature=0.0, max_tokens=10)
    texts, _ = hf_backend.sample(batch, params)
    inputs = hf_backend.prepare(batch)
    expected = greedy_texts(hf_backend, inputs, max_tokens=10)
    assert texts == [[expected[0]] * 3, [expected[1]] * 3]


def test_n_samples_per_request_and_failures_isolated(hf_backend, videos, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    requests = [
        request("a", videos[0]),
        request("b", broken),
        request("c", videos[1]),
        request("d", videos[0], "x"),
    ]
    seen = []
    responses = {
        r.uid: r
        for r in hf_backend.generate(
            requests, GenerationParams(n=4, temperature=1.0, max_tokens=6), seen.append
        )
    }
    assert set(responses) == {"a", "b", "c", "d"} and [r.uid for r in seen] == list(responses)
    assert responses["b"].status == "failed" and "broken.mp4" in responses["b"].error
    for uid in "acd":
        assert responses[uid].ok and len(responses[uid].texts) == 4 and responses[uid].prompt_tokens > 0
        assert responses[uid].video["first"] == 0.0 and responses[uid].video["frames"] % 2 == 0
    assert len(set(responses["a"].texts)) > 1  # sampled, not copies


def test_each_video_is_decoded_once_for_all_its_requests(hf_backend, videos, monkeypatch):
    import vtg_data.lvlm.grouping as hf_module

    calls = []
    real = hf_module.load_clips

    def counting(paths, policy, **kwargs):
        calls.extend(str(p) for p in paths)
        return real(paths, policy, **kwargs)

    monkeypatch.setattr(hf_module, "load_clips", counting)
    requests = [request(f"q{i}", videos[i % 2], f"query {i}") for i in range(6)]
    responses = list(hf_backend.generate(requests, GenerationParams(max_tokens=4)))
    assert len(responses) == 6 and all(r.ok for r in responses)
    assert sorted(calls) == sorted(str(v) for v in videos)


def test_identity_names_the_model_and_a_revision(hf_backend, tiny_model):
    assert hf_backend.identity.backend == "hf" and hf_backend.identity.model == str(tiny_model)
    assert hf_backend.identity.revision.startswith("local-")


def test_qwen3_vl_is_told_the_true_frame_times_and_shares_its_prefill(tmp_path, videos):
    import re

    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.lvlm.tiny import make_tiny_model

    backend = HFBackend(make_tiny_model(tmp_path / "q3", family="qwen3-vl"), batch_size=2)
    assert backend.patch == 32 and type(backend.model).__name__ == "Qwen3VLForConditionalGeneration"
    policy = SamplingPolicy(fps=2.0, max_frames=8, min_pixels=32 * 32, max_pixels=64 * 128, patch=32)
    clip = sample_frames(videos[1], policy)
    inputs = backend.prepare([(request("u", videos[1]), clip)])
    prompt = backend.processor.tokenizer.decode(inputs["input_ids"][0])
    stated = [float(t) for t in re.findall(r"<([0-9.]+) seconds>", prompt)]
    true = clip.timestamps.reshape(-1, 2).mean(axis=1)  # one time per temporal patch of 2 frames
    assert stated == pytest.approx(true, abs=0.051)
    batch = [(request("a", videos[1]), clip)]
    texts, _ = backend.sample(batch, GenerationParams(n=3, max_tokens=6))
    expected = greedy_texts(backend, inputs, max_tokens=6)
    assert texts == [[expected[0]] * 3]
