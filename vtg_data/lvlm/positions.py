"""Qwen2-VL / Qwen2.5-VL multimodal rotary positions as the checkpoints were trained with them.

In Qwen's reference code (and in vLLM), the text after an image or a video continues at one past
the largest position the vision block used, so a video whose temporal positions run to 98 (25
temporal patches x ``second_per_grid`` 1.03 x ``tokens_per_second`` 4) is followed by text at 99.
transformers 5.3 and later (5.19 and 5.24 checked) continue the text at the block's start plus its
larger spatial side instead (``max(h, w) // merge``): the question after a video sits inside the
video's temporal range, and the generated answer then jumps to the reference position (the cached
``rope_deltas`` are computed from the largest position). A checkpoint trained by transformers then
learns positions that neither its own generation nor vLLM uses, and a real Qwen2.5-VL checkpoint is
run at positions it was never trained on.

``use_reference_positions`` installs the reference rule on a loaded model, for training, the hf
backend and GRPO alike, when (and only when) the installed transformers differs from it on a probe.
Qwen3-VL is untouched: every frame is its own block with temporal index 0, where both rules agree.
"""

from __future__ import annotations

import itertools
import types

AFFECTED = ("qwen2_vl", "qwen2_5_vl")
TEXT, IMAGE, VIDEO = 0, 1, 2


def reference_rope_index(
    module,
    input_ids,
    mm_token_type_ids=None,
    image_grid_thw=None,
    video_grid_thw=None,
    second_per_grid_ts=None,
    attention_mask=None,
    **_,
):
    """``(position_ids (3, batch, length), rope_deltas (batch, 1))`` by the reference rule.

    The temporal index of patch ``i`` is ``int(i * second_per_grid * tokens_per_second)`` computed
    in double precision, as vLLM does; every segment starts one past the largest position so far.
    Padding (``attention_mask`` 0) keeps position 0, as in transformers.
    """
    import torch

    config = module.config
    merge = config.vision_config.spatial_merge_size
    tokens_per_second = getattr(config.vision_config, "tokens_per_second", None)
    if mm_token_type_ids is None:  # transformers 4.x: find the vision tokens by id
        mm_token_type_ids = torch.zeros_like(input_ids)
        mm_token_type_ids[input_ids == config.image_token_id] = IMAGE
        mm_token_type_ids[input_ids == config.video_token_id] = VIDEO
    grids = {
        IMAGE: iter(image_grid_thw.tolist()) if image_grid_thw is not None else iter(()),
        VIDEO: iter(video_grid_thw.tolist()) if video_grid_thw is not None else iter(()),
    }
    seconds = iter(second_per_grid_ts.tolist()) if second_per_grid_ts is not None else None
    positions = torch.zeros(3, *input_ids.shape, dtype=torch.long, device=input_ids.device)
    deltas = []
    for row in range(input_ids.shape[0]):
        keep = (
            attention_mask[row].bool()
            if attention_mask is not None
            else torch.ones(input_ids.shape[1], dtype=torch.bool, device=input_ids.device)
        )
        kinds = mm_token_type_ids[row][keep].tolist()
        parts = []
        start = 0
        for kind, run in itertools.groupby(kinds):
            length = len(list(run))
            if kind == TEXT:
                part = torch.arange(length).expand(3, -1) + start
            else:
                t, h, w = next(grids[kind])
                factor = 1.0
                if kind == VIDEO and tokens_per_second is not None:
                    factor = float(next(seconds) if seconds is not None else 1.0) * tokens_per_second
                temporal = (torch.arange(t, dtype=torch.float64) * factor).long()
                grid = torch.meshgrid(
                    temporal, torch.arange(h // merge), torch.arange(w // merge), indexing="ij"
                )
                part = torch.stack(grid).reshape(3, -1) + start
                if part.shape[1] != length:
                    raise ValueError(
                        f"{length} vision tokens in a row but the grid {t}x{h}x{w} (merge {merge}) "
                        f"holds {part.shape[1]}"
                    )
            parts.append(part)
            start = int(part.max()) + 1
        row_positions = torch.cat(parts, dim=1) if parts else torch.zeros(3, 0, dtype=torch.long)
        positions[:, row, keep] = row_positions.to(positions.device)
        deltas.append(start - len(kinds))
    return positions, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)


def _probe(module):
    """A text + video + text row on which the two rules differ (temporal extent > spatial)."""
    import torch

    merge = module.config.vision_config.spatial_merge_size
    grid = torch.tensor([[6, 2 * merge, 2 * merge]])
    video_tokens = int(grid.prod()) // (merge * merge)
    types_ = [TEXT] * 3 + [VIDEO] * video_tokens + [TEXT] * 3
    ids = torch.full((1, len(types_)), 0, dtype=torch.long)
    ids[0, 3 : 3 + video_tokens] = module.config.video_token_id
    return {
        "input_ids": ids,
        "mm_token_type_ids": torch.tensor([types_]),
        "video_grid_thw": grid,
        "second_per_grid_ts": torch.tensor([1.0]),
        "attention_mask": torch.ones_like(ids),
    }


def differs_from_reference(module) -> bool:
    """Whether the module's own ``get_rope_index`` places positions otherwise than the reference."""
    import torch

    probe = _probe(module)
    try:
        theirs, their_deltas = module.get_rope_index(**probe)
    except (TypeError, ValueError, RuntimeError, StopIteration):
        return True
    ours, our_deltas = reference_rope_index(module, **probe)
    return not (torch.equal(theirs.cpu(), ours) and torch.equal(their_deltas.cpu().long(), our_deltas.long()))


def use_reference_positions(model) -> str | None:
    """Install the reference rule on every Qwen2-VL / Qwen2.5-VL module of ``model`` that needs it
    (any wrapper: peft, DDP). Returns what was done, for manifests, or None when nothing was."""
    import transformers

    installed = False
    for module in model.modules():
        config = getattr(module, "config", None)
        if getattr(config, "model_type", None) not in AFFECTED or "rope_deltas" not in vars(module):
            continue
        if getattr(module.get_rope_index, "__func__", None) is reference_rope_index:
            installed = True
            continue
        if differs_from_reference(module):
            module.get_rope_index = types.MethodType(reference_rope_index, module)
            installed = True
    if not installed:
        return None
    return (
        f"reference multimodal positions (text after a video at one past its largest position, as in "
        f"Qwen's code and vLLM); transformers {transformers.__version__} places it otherwise"
    )
