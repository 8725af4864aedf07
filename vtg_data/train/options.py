"""What a training run is given, shared by both trainers: where its data comes from
(``TrainData``) and the options of ``TrainerOptions`` (prompt, frames, how the model is trained,
the input pipeline, evaluation and checkpoints)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

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


def batch_key(uids: list[str]) -> str:
    return hashlib.sha256("|".join(uids).encode()).hexdigest()[:12]
