"""What both trainers share: the run folder, the schedule, checkpoints that resume exactly,
metrics as JSONL, and held-out evaluation through the inference backend (the eval code path)."""

from __future__ import annotations

import copy
import json
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vtg_data.grounding.metrics import best_match
from vtg_data.grounding.parse import parse_answer
from vtg_data.lvlm import GenerationParams
from vtg_data.lvlm.hf import HFBackend
from vtg_data.stages.common import write_json_atomic
from vtg_data.train.data import Example, VideoInputs


def lr_lambda(warmup: int, steps: int, floor: float):
    """Linear warm-up, then linear decay to ``floor`` of the peak at the last step."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, steps - warmup)
        return max(floor, 1.0 - (1.0 - floor) * progress)

    return factor


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The example order of an epoch: a function of (seed, epoch) only, so a resume replays it."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def batch_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """Examples of a step: consecutive slices of the per-epoch orders."""
    start = step * batch
    out = []
    while len(out) < batch:
        epoch, offset = divmod(start + len(out), n)
        out.append(epoch_order(n, seed, epoch)[offset])
    return out


def micro_batches(n: int, size: int) -> list[range]:
    """Index ranges of at most ``size`` items (all ``n`` at once when ``size`` is 0)."""
    size = size or max(n, 1)
    return [range(start, min(n, start + size)) for start in range(0, n, size)]


class MetricsLog:
    def __init__(self, path: Path):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(path.parent / "tensorboard"))
        except Exception:  # TensorBoard is optional
            self.board = None

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as sink:
            sink.write(json.dumps(record) + "\n")
        if self.board is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.board.add_scalar(key, value, record["step"])


def save_checkpoint(
    out: Path, step: int, model, processor, optimizer, scheduler, extra: dict | None = None
) -> Path:
    """``out/checkpoints/step-N``: model + processor (loadable by ``vtg-data eval --model``),
    optimizer, scheduler and RNG states, and the step (the data position follows from it)."""
    folder = out / "checkpoints" / f"step-{step:06d}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
        },
        tmp / "trainer_state.pt",
    )
    write_json_atomic(tmp / "trainer_state.json", {"step": step, **(extra or {})})
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return folder


def latest_checkpoint(out: Path) -> Path | None:
    folders = (
        sorted(p for p in (out / "checkpoints").glob("step-*") if not p.name.endswith(".tmp"))
        if (out / "checkpoints").is_dir()
        else []
    )
    return folders[-1] if folders else None


def restore(folder: Path, optimizer, scheduler) -> int:
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return json.loads((folder / "trainer_state.json").read_text())["step"]


def evaluate_examples(backend: HFBackend, inputs: VideoInputs, examples: list[Example], max_tokens: int = 32,
                      samples: int = 1, temperature: float = 0.0) -> dict[str, float]:  # fmt: skip
    """Held-out mIoU (and R1@0.5, well-formed rate) through the inference backend, as eval does."""
    backend.model.eval()
    params = GenerationParams(n=samples, temperature=temperature, max_tokens=max_tokens)
    ious, formed = [], []
    batch = [(inputs.request(e), inputs.clip(e.video)) for e in examples]
    texts = []
    for start in range(0, len(batch), 16):
        chunk, _ = backend.sample(batch[start : start + 16], params)
        texts += chunk
    for example, outputs in zip(examples, texts, strict=True):
        for text in outputs:
            parsed = parse_answer(text, example.duration)
            formed.append(
                parse_answer(text, mode="strict").ok or parsed.ok and text.strip().startswith("<time>")
            )
            ious.append(
                best_match(parsed.windows[0], example.windows)[0] if parsed.ok and parsed.windows else 0.0
            )
    return {
        "mIoU": sum(ious) / len(ious),
        "R1@0.5": sum(v >= 0.5 for v in ious) / len(ious),
        "well_formed": sum(formed) / len(formed),
    }


def load_run_data(cfg) -> tuple[list[Example], list[Example]]:
    """Training examples and the held-out ones of a trainer config (``data``/``eval_data``)."""
    from vtg_data.train.data import load_examples

    def load(data):
        return load_examples(data.path, video_root=data.video_root, revision=data.revision, config=data.config,
                             split=data.split, prompt=cfg.prompt, limit=data.limit)  # fmt: skip

    return load(cfg.data), (load(cfg.eval_data) if cfg.eval_data is not None else [])


def after_step(cfg, step: int, record: dict, *, log: MetricsLog, history: list, model, backend, inputs, held_out,
               optimizer, scheduler, progress=None, task=None) -> None:  # fmt: skip
    """Periodic held-out eval, the metrics line, periodic checkpoint, progress: one step's bookkeeping."""
    if held_out and cfg.eval_every and step % cfg.eval_every == 0:
        record |= {
            f"eval/{k}": v
            for k, v in evaluate_examples(backend, inputs, held_out, cfg.eval_max_tokens).items()
        }
    if any(v != v for v in record.values() if isinstance(v, float)):
        raise FloatingPointError(f"NaN at step {step}: {record}")
    log.write(record)
    history.append(record)
    if cfg.save_every and step % cfg.save_every == 0:
        save_checkpoint(cfg.out, step, model, backend.processor, optimizer, scheduler)
    if task is not None:
        progress.advance(task)


def finish(
    cfg, last: int, *, model, backend, inputs, held_out, optimizer, scheduler, history
) -> dict[str, Any]:
    """The final checkpoint, the held-out evaluation and ``summary.json``."""
    final = (
        save_checkpoint(cfg.out, last, model, backend.processor, optimizer, scheduler)
        if cfg.save_final
        else None
    )
    result = {"final_checkpoint": str(final) if final else None, "steps": last, "history": history}
    if held_out:
        result["eval"] = evaluate_examples(backend, inputs, held_out, cfg.eval_max_tokens)
    write_json_atomic(cfg.out / "summary.json", {k: v for k, v in result.items() if k != "history"})
    return result


@dataclass
class Run:
    """A trainer's state once set up: the model (wrapped for the devices), the backend around the
    bare model (rollouts and held-out eval), optimizer, schedule, data, and where it starts.

    With several processes (``accelerate launch`` or ``torchrun``), every process draws the same
    global batch (a function of seed and step) and trains on its share (``shard``); only the main
    process writes metrics, checkpoints and the summary.
    """

    accelerator: Any
    backend: Any
    model: Any
    optimizer: Any
    scheduler: Any
    parameters: list
    examples: list
    held_out: list
    inputs: VideoInputs
    start_step: int
    source: str
    log: MetricsLog | None
    reference: Any = None

    @property
    def bare(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def shard(self, items: list) -> list:
        return items[self.accelerator.process_index :: self.accelerator.num_processes]

    def mean(self, value: float) -> float:
        """The mean of a per-process number over all processes (itself with one process)."""
        tensor = torch.tensor(float(value), device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, reduction="mean"))


def start_run(cfg, stage: str, per_step: int, backend=None, with_reference: bool = False) -> Run:
    """Seed, resume point, devices, model (LoRA, frozen tower, checkpointing), data, optimizer and
    schedule (restored on resume), config.json: what both trainers do before their first step."""
    from accelerate import Accelerator

    from vtg_data.stages.common import jsonable
    from vtg_data.train.sft import build_backend, prepare_model

    torch.manual_seed(cfg.seed)
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    if per_step % accelerator.num_processes:
        raise ValueError(
            f"{per_step} examples per step do not split over {accelerator.num_processes} processes"
        )
    cfg.out.mkdir(parents=True, exist_ok=True)
    checkpoint = latest_checkpoint(cfg.out) if cfg.resume else None
    source = str(checkpoint) if checkpoint is not None else cfg.model
    backend = backend if backend is not None and checkpoint is None else build_backend(source, cfg)
    prepare_model(backend, cfg)
    reference = copy.deepcopy(backend.model).eval().requires_grad_(False) if with_reference else None
    examples, held_out = load_run_data(cfg)
    inputs = VideoInputs(backend, cfg.policy)
    parameters = [p for p in backend.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup, cfg.steps, cfg.lr_floor))
    start_step = restore(checkpoint, optimizer, scheduler) if checkpoint is not None else 0
    model, optimizer = accelerator.prepare(backend.model, optimizer)
    backend.model = accelerator.unwrap_model(model)  # generation and eval run on the bare model
    log = None
    if accelerator.is_main_process:
        config = {"stage": stage, "config": jsonable(asdict(cfg)), "started_from": source,
                  "processes": accelerator.num_processes}  # fmt: skip
        write_json_atomic(cfg.out / "config.json", config)
        log = MetricsLog(cfg.out / "metrics.jsonl")
    return Run(accelerator, backend, model, optimizer, scheduler, parameters, examples, held_out, inputs,
               start_step, source, log, reference)  # fmt: skip


def end_step(cfg, run: Run, step: int, record: dict, history: list, progress=None, task=None) -> None:
    """``after_step`` on the main process; the others only keep the history."""
    if run.is_main:
        after_step(cfg, step, record, log=run.log, history=history, model=run.bare, backend=run.backend,
                   inputs=run.inputs, held_out=run.held_out, optimizer=run.optimizer, scheduler=run.scheduler,
                   progress=progress, task=task)  # fmt: skip
    else:
        history.append(record)


def end_run(cfg, run: Run, last: int, history: list) -> dict[str, Any]:
    run.accelerator.wait_for_everyone()
    if not run.is_main:
        return {"final_checkpoint": None, "steps": last, "history": history}
    return finish(cfg, last, model=run.bare, backend=run.backend, inputs=run.inputs, held_out=run.held_out,
                  optimizer=run.optimizer, scheduler=run.scheduler, history=history)  # fmt: skip
