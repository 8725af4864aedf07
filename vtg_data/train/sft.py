"""``vtg-data train sft``: supervised fine-tuning on assistant tokens, video as video.

One readable loop: seeded batches (a function of the step, so a resume replays the data order),
AdamW with linear warm-up and decay, gradient clipping, loss on the answer tokens only, periodic
held-out evaluation through the inference backend, checkpoints that ``vtg-data eval --model``
loads and ``--resume`` continues from. ``accelerate`` places the model (CPU, one GPU, or several
with ``accelerate launch``); bf16 and gradient checkpointing on GPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vtg_data.train.options import TrainData, TrainerOptions, batch_key


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
        end_step(cfg, run, step + 1, record, history, progress, task, last)
    return end_run(cfg, run, last, history)
