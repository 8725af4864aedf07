"""Checkpoints that ``vtg-data eval --model`` loads and ``--resume`` continues exactly: the model
and processor as an ordinary model folder, the optimizer keyed by parameter name (so a run resumes
on any number of processes), scheduler and RNG states, and the step (the data position follows
from it)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from vtg_data.stages.common import write_json_atomic


def save_checkpoint(run, out: Path, step: int, extra: dict | None = None) -> Path:
    """``out/checkpoints/step-N``: model + processor (loadable by ``vtg-data eval --model``),
    optimizer, scheduler and RNG states, and the step (the data position follows from it).

    Called on every process: under FSDP the full model and optimizer states are gathered from the
    shards (collectives), then the main process writes them. The optimizer state is keyed by
    parameter name, not by shard, so a run resumes on any number of processes.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on the main process
    model_state = get_model_state_dict(run.model, options=full)
    # gathered tensors no longer share storage, so the writer cannot see which are tied: drop the
    # copies (Qwen2.5-VL-3B's output layer is its 1.2 GB input embedding)
    for target, source in (getattr(run.bare, "all_tied_weights_keys", None) or {}).items():
        if target in model_state and source in model_state:
            del model_state[target]
    optimizer_state = get_optimizer_state_dict(run.model, _bare_optimizer(run.optimizer), options=full)
    folder = out / "checkpoints" / f"step-{step:06d}"
    if run.is_main:
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        run.bare.save_pretrained(tmp, state_dict=model_state)
        run.backend.processor.save_pretrained(tmp)
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(
            {
                "scheduler": run.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
                "python_rng": random.getstate(),
            },
            tmp / "trainer_state.pt",
        )
        write_json_atomic(tmp / "trainer_state.json", {"step": step, **(extra or {})})
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    run.accelerator.wait_for_everyone()
    return folder


def _bare_optimizer(optimizer):
    """The torch optimizer inside accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)


def latest_checkpoint(out: Path) -> Path | None:
    folders = (
        sorted(p for p in (out / "checkpoints").glob("step-*") if not p.name.endswith(".tmp"))
        if (out / "checkpoints").is_dir()
        else []
    )
    return folders[-1] if folders else None


def restore(folder: Path, model, optimizer, scheduler) -> int:
    """The optimizer, schedule and RNG states of a checkpoint, into a prepared model's optimizer.

    With several processes only the main one reads the optimizer file and it is broadcast (one
    copy in host memory, not one per process); parameters without state (never given a gradient)
    keep none.
    """
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if not (folder / "optimizer.pt").is_file():
        raise FileNotFoundError(f"{folder}: no optimizer.pt; this checkpoint cannot be resumed from")
    distributed = dist.is_available() and dist.is_initialized()
    first = not distributed or dist.get_rank() == 0
    optimizer_state = torch.load(folder / "optimizer.pt", weights_only=False) if first else {}
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=distributed, strict=False)
    set_optimizer_state_dict(model, _bare_optimizer(optimizer), optimizer_state, options=options)
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return json.loads((folder / "trainer_state.json").read_text())["step"]
