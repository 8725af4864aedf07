"""``vtg-data train sft``: supervised fine-tuning on assistant tokens, video as video.

One readable loop: seeded batches (a function of the step, so a resume replays the data order),
AdamW with linear warm-up and decay, gradient clipping, loss on the answer tokens only, periodic
held-out evaluation through the inference backend, checkpoints that ``vtg-data eval --model``
loads and ``--resume`` continues from. ``accelerate`` places the model (CPU, one GPU, or several
with ``accelerate launch``); bf16 and gradient checkpointing on GPU.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtg_data.video import SamplingPolicy


@dataclass(frozen=True)
class TrainData:
    """Where examples come from: a hub id (with revision) or a local folder/table."""

    path: str
    video_root: Path
    revision: str | None = None
    config: str = "all"
    split: str = "train"
    limit: int | None = None


PARAM_DTYPES = ("float32", "bfloat16")


def check_param_dtype(name: str) -> None:
    if name not in PARAM_DTYPES:
        raise ValueError(f"param_dtype must be one of {PARAM_DTYPES}, not {name!r}")


@dataclass(frozen=True, kw_only=True)
class TrainerOptions:
    """What both trainers take besides their model, data and schedule: the prompt and video
    sampling (the evaluation's), how the model is trained, when to evaluate and save."""

    eval_data: TrainData | None = None
    prompt: str = "tvg_r1_think"
    policy: SamplingPolicy = field(default_factory=SamplingPolicy)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    freeze_vision: bool = False
    lora_rank: int = 0
    gradient_checkpointing: bool = False
    micro_batch: int = 0  # items per forward/backward (gradients accumulated); 0: the whole step at once
    param_dtype: str = "float32"  # master weights; on GPU the compute is bf16 autocast either way
    eval_every: int = 0
    save_final: bool = True
    eval_max_tokens: int = 32
    resume: bool = False
    stop_after: int | None = None  # stop early at this step (the schedule still spans ``steps``)
    workers: int = 2  # data-loading processes decoding and preparing examples ahead of the step
    prefetch: int = 2  # steps each worker prepares ahead: memory is bounded by workers x prefetch
    frame_cache: Path | None = (
        None  # decoded clips on disk, shared with eval and scoring (default: OUT/frame-cache)
    )
    frame_cache_gib: float = 16.0  # the cache's size bound; least recently used clips go first
    keep_prepared_mib: int = 512  # prepared examples kept per process for later epochs (LRU; 0: none)

    def __post_init__(self) -> None:
        check_param_dtype(self.param_dtype)
        if self.workers < 0 or self.prefetch < 1 or self.frame_cache_gib <= 0 or self.keep_prepared_mib < 0:
            raise ValueError(
                "need workers >= 0, prefetch >= 1, frame_cache_gib > 0 and keep_prepared_mib >= 0"
            )


@dataclass(frozen=True)
class SFTConfig(TrainerOptions):
    model: str
    data: TrainData
    out: Path
    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 20
    lr_floor: float = 0.1
    save_every: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("steps, batch_size and lr must be positive")


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


def batch_key(uids: list[str]) -> str:
    return hashlib.sha256("|".join(uids).encode()).hexdigest()[:12]


def train_sft(cfg: SFTConfig, progress=None, backend=None) -> dict[str, Any]:
    """Train; ``backend`` passes a model already in memory (an ``HFBackend``), else ``cfg.model`` is loaded."""
    from vtg_data.lvlm.hf import rope_owner
    from vtg_data.train.common import (
        batch_indices,
        cache_counts,
        end_run,
        end_step,
        record_skipped,
        start_run,
    )

    run = start_run(cfg, "train sft", cfg.batch_size, backend)
    model, accelerator = run.model, run.accelerator
    last = min(cfg.steps, cfg.stop_after or cfg.steps)
    task = (
        progress.add_task("sft", total=last, completed=run.start_step) if progress and run.is_main else None
    )
    history = []
    began = time.perf_counter()
    # examples are decoded, prepared and collated ahead by the loader's workers, step by step
    for step, prepared in zip(
        range(run.start_step, last), run.steps(cfg, cfg.batch_size, last, sft=True), strict=True
    ):
        model.train()
        items = prepared.items
        scheduled = run.examples.uids(batch_indices(len(run.examples), cfg.batch_size, step, cfg.seed))
        scale = run.token_scale(sum(int((part["labels"][:, 1:] != -100).sum()) for part in prepared.parts))
        loss = 0.0
        for part in prepared.parts:  # micro-batches of cfg.micro_batch examples
            batch = {k: v.to(accelerator.device) for k, v in part.items()}
            inner = rope_owner(model)
            if inner is not None:
                inner.rope_deltas = None  # positions of another call must not leak into this forward
            # the model's loss is the mean over this part's answer tokens: reweight to the mean over the
            # answer tokens of the whole batch (all micro-batches, all processes)
            part_tokens = int((batch["labels"][:, 1:] != -100).sum())
            part_loss = model(**batch).loss * (part_tokens * scale)
            accelerator.backward(part_loss)
            loss += float(part_loss.detach())
        accelerator.clip_grad_norm_(run.parameters, cfg.grad_clip)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        record = {"step": step + 1, "loss": run.mean(loss), "lr": run.scheduler.get_last_lr()[0],
                  "batch": batch_key(scheduled), "skipped": record_skipped(cfg, run, step + 1, items),
                  **cache_counts(run, items), "seconds": round(time.perf_counter() - began, 3)}  # fmt: skip
        end_step(cfg, run, step + 1, record, history, progress, task)
    return end_run(cfg, run, last, history)
