"""The model a run trains: loaded inside the inference backend (rollouts and held-out evaluation
use it as it trains), in its master-weight dtype, with its vision tower frozen, gradient
checkpointing or LoRA as configured."""

from __future__ import annotations

from pathlib import Path


def build_backend(source: str, cfg):
    """The model to train, inside the inference backend used for rollouts and held-out eval.

    Resuming a LoRA run loads the base model with the checkpoint's adapter still trainable.
    """
    from vtg_data.lvlm.hf import HFBackend, is_adapter_folder

    return HFBackend(
        source, batch_size=16, trainable_adapter=bool(cfg.lora_rank) and is_adapter_folder(source)
    )


LORA_TARGETS = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
]  # the language model's attention; the vision tower has qkv/proj


def prepare_model(backend, cfg) -> None:
    """Master weights in ``param_dtype``, frozen vision tower, gradient checkpointing, LoRA, as
    configured.

    Published checkpoints are often bfloat16; trained in bfloat16 weights, updates of lr ~1e-6
    round away, so the weights are float32 unless asked otherwise (the compute on GPU is bf16
    autocast either way).
    """
    import torch

    model = backend.model.to(getattr(torch, cfg.param_dtype))
    if cfg.freeze_vision:
        visual = getattr(getattr(model, "model", model), "visual", None)
        if visual is not None:
            visual.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if cfg.lora_rank and not hasattr(model, "peft_config"):  # a resumed adapter is already wrapped
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as error:
            raise ImportError("--lora-rank needs peft (pip install 'vtg-data[train]')") from error
        if Path(cfg.model).is_dir():
            model.name_or_path = str(Path(cfg.model).resolve())  # recorded as the adapter's base
        lora = LoraConfig(
            r=cfg.lora_rank, lora_alpha=2 * cfg.lora_rank, lora_dropout=0.0, target_modules=LORA_TARGETS
        )
        backend.model = get_peft_model(model, lora)
