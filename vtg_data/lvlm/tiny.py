"""Tiny random-weight Qwen2.5-VL and Qwen3-VL models, built entirely offline, for tests and the demo.

The architecture, processor and chat template are the real Qwen2.5-VL ones (so every code path
that handles video tokens, grids and timing is exercised); only the sizes are tiny and the
tokenizer is byte-level (256 byte tokens plus Qwen's special tokens) built in code, so nothing is
downloaded. ``make_tiny_model(out)`` writes a folder that ``from_pretrained(out)`` loads.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen-style chat template: content is a string or a list of parts (text / image / video).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# Qwen3's tokenizers carry the reasoning markers as single added (not special) tokens; vLLM's
# ``--reasoning-parser qwen3`` finds them by id.
THINK_TOKENS = ["<think>", "</think>"]


def build_tokenizer(family: str = "qwen2.5-vl"):
    """Byte-level BPE without merges: every byte is a token, then the special tokens (and, for
    Qwen3-VL, the reasoning markers)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: index for index, char in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS,
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )
    if family == "qwen3-vl":
        from tokenizers import AddedToken

        tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in THINK_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


FAMILIES = ("qwen2.5-vl", "qwen3-vl")

# The sampling fields of the real checkpoints' generation_config.json (Qwen/Qwen2.5-VL-7B-Instruct,
# Qwen/Qwen3-VL-8B-Instruct), written into the tiny models so every test meets what a user's
# checkpoint carries: a caller that leaves top_k unset samples greedily from Qwen2.5-VL-7B-Instruct.
CHECKPOINT_SAMPLING = {
    "qwen2.5-vl": {"do_sample": True, "temperature": 0.1, "top_p": 0.001, "top_k": 1, "repetition_penalty": 1.05},
    "qwen3-vl": {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.0},
}  # fmt: skip


def build_processor(tokenizer=None, family: str = "qwen2.5-vl"):
    """The stock processor of the family around the offline tokenizer."""
    from transformers import Qwen2VLImageProcessor

    tokenizer = tokenizer or build_tokenizer(family)
    if family == "qwen3-vl":
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

        pixels = {"shortest_edge": 4 * 32 * 32, "longest_edge": 1024 * 32 * 32}
        # Qwen3-VL-8B-Instruct's preprocessor_config.json normalizes with mean = std = 0.5 (not
        # CLIP's): vLLM normalizes video pixels on the device with the image processor's values
        half = [0.5, 0.5, 0.5]
        return Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(
                size=pixels, patch_size=16, image_mean=half, image_std=half
            ),
            tokenizer=tokenizer,
            video_processor=Qwen3VLVideoProcessor(size=pixels),
            chat_template=CHAT_TEMPLATE,
        )
    from transformers import Qwen2_5_VLProcessor, Qwen2VLVideoProcessor

    pixels = {"shortest_edge": 4 * 28 * 28, "longest_edge": 1024 * 28 * 28}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=pixels),
        chat_template=CHAT_TEMPLATE,
    )


def build_qwen3_config(tokenizer, *, hidden_size: int = 64, layers: int = 2, size: str | None = None):
    """A tiny Qwen3-VL config (16-pixel patches, deepstack, timestamps written into the prompt).

    ``size`` takes the text and vision widths of the named learning shape (``SIZES``), so both
    families can be compared at the same parameter budget.
    """
    from transformers import Qwen3VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    shape = SIZES[size] if size else None
    text = dict(shape["text"]) if shape else {
        "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "num_hidden_layers": layers,
        "num_attention_heads": 4, "num_key_value_heads": 2,
    }  # fmt: skip
    vision = dict(shape["vision"]) if shape else {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2}
    hidden_size = text["hidden_size"]
    head_dim = hidden_size // text["num_attention_heads"]
    half = head_dim // 2  # Qwen3-VL splits 24/20/20 of 64 rotary pairs over time, height, width
    sections = [round(half * 24 / 64), round(half * 20 / 64)]
    sections.append(half - sum(sections))
    return Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            **text,
            "head_dim": head_dim,
            "max_position_embeddings": 262144,  # Qwen3-VL-8B-Instruct's
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections,
                                "mrope_interleaved": True},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2, **vision, "patch_size": 16,
            "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": hidden_size,
            "num_position_embeddings": 256, "deepstack_visual_indexes": [0, 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=bool(size),
    )  # fmt: skip


# Qwen2.5-VL-3B-Instruct's shapes (random weights): for GPU measurements without a download.
QWEN25_VL_3B = {
    "text": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
             "num_key_value_heads": 2, "vocab_size": 151936},
    "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
               "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]},
}  # fmt: skip


# Small sizes for learning on CPU (temporal rotary share raised to half: time is what is learned).
SIZES = {
    "xs": {"text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                    "num_key_value_heads": 1}, "vision": {"hidden_size": 32, "intermediate_size": 64, "num_heads": 2}},
    "s": {"text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2}, "vision": {"hidden_size": 64, "intermediate_size": 128, "num_heads": 2}},
    "m": {"text": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
                   "num_key_value_heads": 2}, "vision": {"hidden_size": 64, "intermediate_size": 128, "num_heads": 2}},
}  # fmt: skip


def build_config(
    tokenizer, *, hidden_size: int = 64, layers: int = 2, shape: dict | None = None, size: str | None = None
):
    """A Qwen2.5-VL config: tiny by default, or the sizes in ``shape`` (e.g. ``QWEN25_VL_3B``)."""
    from transformers import Qwen2_5_VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128000,  # Qwen2.5-VL-7B-Instruct's (vLLM caps --max-model-len by it)
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        **(shape or {}).get("text", {}),
        **(SIZES[size]["text"] if size else {}),
    }
    half = text["hidden_size"] // text["num_attention_heads"] // 2
    if size:  # half of the rotary pairs for time, a quarter each for height and width
        sections = [half // 2, half // 4, half - half // 2 - half // 4]
    else:  # Qwen's 16/24/24 proportions
        sections = [half // 4, 3 * half // 8, half - half // 4 - 3 * half // 8]
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 1000000.0 if shape else 10000.0,
        "mrope_section": sections,
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": text["hidden_size"],
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,
        "fullatt_block_indexes": [1],
        **(shape or {}).get("vision", {}),
        **(SIZES[size]["vision"] if size else {}),
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=bool(size),
    )


def make_tiny_model(
    out: str | Path,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    layers: int = 2,
    family: str = "qwen2.5-vl",
    size: str | None = None,
) -> Path:
    """Write model, tokenizer and processor to ``out``; returns the folder."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")
    if size is not None and size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    out = Path(out)
    tokenizer = build_tokenizer(family)
    torch.manual_seed(seed)
    if family == "qwen3-vl":
        model = Qwen3VLForConditionalGeneration(
            build_qwen3_config(tokenizer, hidden_size=hidden_size, layers=layers, size=size)
        )
    else:
        model = Qwen2_5_VLForConditionalGeneration(
            build_config(tokenizer, hidden_size=hidden_size, layers=layers, size=size)
        )
    end, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # the checkpoint's own stop tokens (<|im_end|>, <|endoftext|>) and sampling defaults
    model.generation_config.update(
        eos_token_id=[end, pad], pad_token_id=pad, bos_token_id=pad, **CHECKPOINT_SAMPLING[family]
    )
    processor = build_processor(tokenizer, family)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "vtg_data_tiny.json").write_text(
        json.dumps(
            {"seed": seed, "hidden_size": hidden_size, "layers": layers, "size": size, "family": family}
        )
    )
    return out
