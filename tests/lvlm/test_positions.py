"""Qwen2.5-VL's multimodal positions: the reference rule (Qwen's code, vLLM) on every loaded model,
so what a model is trained on, what it generates from and what vLLM serves are the same positions."""

import pytest
from videos import timecode_video

from vtg_data.lvlm import Request
from vtg_data.lvlm.positions import reference_rope_index, use_reference_positions
from vtg_data.video import SamplingPolicy, sample_frames

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

POLICY = SamplingPolicy(fps=2.0, max_frames=24, min_pixels=28 * 28, max_pixels=56 * 56)


@pytest.fixture(scope="module")
def prompt_inputs(hf_backend, tmp_path_factory):
    video = timecode_video(tmp_path_factory.mktemp("positions") / "v.mp4", duration=12.0)
    # a short question after the video: its positions end inside the video's temporal range
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "When?"}]}]
    request = Request("u", messages, str(video), POLICY)
    clip = sample_frames(video, POLICY)
    return hf_backend.prepare([(request, clip)])


def test_text_after_a_video_starts_one_past_the_video_largest_position(hf_backend, prompt_inputs):
    inner = hf_backend.model.model
    positions, deltas = inner.get_rope_index(
        prompt_inputs["input_ids"],
        mm_token_type_ids=prompt_inputs["mm_token_type_ids"],
        video_grid_thw=prompt_inputs["video_grid_thw"],
        second_per_grid_ts=prompt_inputs["second_per_grid_ts"],
        attention_mask=prompt_inputs["attention_mask"],
    )
    video = (prompt_inputs["input_ids"][0] == hf_backend.model.config.video_token_id).nonzero().flatten()
    first, last = int(video[0]), int(video[-1])
    block = positions[:, 0, first : last + 1]
    t, h, w = prompt_inputs["video_grid_thw"][0].tolist()
    seconds = float(prompt_inputs["second_per_grid_ts"][0])
    tokens_per_second = hf_backend.model.config.vision_config.tokens_per_second
    # temporal index of patch i: int(i * seconds per patch * tokens per second), after the text before
    assert int(block[0].max()) - int(block[0].min()) == int((t - 1) * seconds * tokens_per_second)
    assert int(block[0].max()) > max(h, w) // 2  # the case where the rules differ
    assert int(positions[0, 0, last + 1]) == int(block.max()) + 1
    length = prompt_inputs["input_ids"].shape[1]
    assert int(deltas[0]) == int(positions[:, 0].max()) + 1 - length


def test_generation_continues_at_the_positions_training_uses(hf_backend, prompt_inputs):
    """The answer tokens get the same rotary positions while generated (from the cache) as in one
    teacher-forced forward of the whole sequence (what SFT and GRPO compute), and the same logits."""
    model = hf_backend.model
    seen: list = []

    def keep_positions(module, args, kwargs):
        seen.append(kwargs["position_ids"][-3:].clone())  # (3, batch, length); a 4th row is the text's

    hook = model.model.language_model.register_forward_pre_hook(keep_positions, with_kwargs=True)
    steps = 6
    try:
        model.model.rope_deltas = None
        with torch.inference_mode():
            out = model.generate(**prompt_inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True, repetition_penalty=1.0,
                                 top_k=None, top_p=None, temperature=None,
                                 pad_token_id=hf_backend.processor.tokenizer.pad_token_id)  # fmt: skip
            generated_positions = torch.cat([p[:, 0] for p in seen[1:]], dim=1)  # the decoding steps
            generated = out.sequences[:, prompt_inputs["input_ids"].shape[1] :]
            whole = {k: v for k, v in prompt_inputs.items() if k not in ("input_ids", "attention_mask")}
            whole["input_ids"] = torch.cat([prompt_inputs["input_ids"], generated[:, :-1]], dim=1)
            whole["attention_mask"] = torch.ones_like(whole["input_ids"])
            whole["mm_token_type_ids"] = torch.cat(
                [prompt_inputs["mm_token_type_ids"], torch.zeros_like(generated[:, :-1])], dim=1
            )
            model.model.rope_deltas = None
            seen.clear()
            teacher_forced = model(**whole).logits[0, -steps:]
    finally:
        hook.remove()
    trained_positions = seen[0][:, 0, -(steps - 1) :]
    assert generated_positions.tolist() == trained_positions.tolist()
    stepwise = torch.stack(out.logits, dim=1)[0]
    assert torch.allclose(stepwise, teacher_forced, atol=1e-4), (stepwise - teacher_forced).abs().max()


def test_agrees_with_transformers_where_there_is_no_temporal_extent(hf_backend):
    """An image (one temporal patch): both rules put the text at the block's start + its larger side."""
    config = hf_backend.model.config
    grid = torch.tensor([[1, 6, 10]])
    tokens = int(grid.prod()) // 4
    types = [0] * 4 + [1] * tokens + [0] * 5
    ids = torch.zeros(1, len(types), dtype=torch.long)
    ids[0, 4 : 4 + tokens] = config.image_token_id
    ours, our_deltas = reference_rope_index(
        hf_backend.model.model, ids, mm_token_type_ids=torch.tensor([types]), image_grid_thw=grid
    )
    assert ours[:, 0, 4 + tokens].tolist() == [4 + 5] * 3
    assert int(our_deltas[0]) == int(ours.max()) + 1 - len(types)


def test_installed_once_and_recorded(hf_backend):
    note = use_reference_positions(hf_backend.model)
    assert note is None or "reference multimodal positions" in note
    assert hf_backend.backend_notes().get("positions") == note
