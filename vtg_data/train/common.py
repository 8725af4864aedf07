"""What both trainers share: the run's setup (devices, model, data, optimizer, schedule, resume
point), the schedule, metrics as JSONL, the per-step bookkeeping and held-out evaluation through
the inference backend (the eval code path). Checkpoints are in ``checkpoints``."""

from __future__ import annotations

import copy
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vtg_data.grounding.metrics import best_match
from vtg_data.grounding.parse import parse_answer
from vtg_data.lvlm import GenerationParams
from vtg_data.lvlm.hf import HFBackend
from vtg_data.stages.common import write_json_atomic
from vtg_data.train.checkpoints import latest_checkpoint, restore, save_checkpoint
from vtg_data.train.data import (  # noqa: F401  (batch_indices: the trainers import it from here)
    Example,
    PreparedExamples,
    SFTCollator,
    StepBatches,
    VideoInputs,
    batch_indices,
    epoch_order,
    step_loader,
)
from vtg_data.video import FrameCache


def lr_lambda(warmup: int, steps: int, floor: float):
    """Linear warm-up, then linear decay to ``floor`` of the peak at the last step."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, steps - warmup)
        return max(floor, 1.0 - (1.0 - floor) * progress)

    return factor


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


def evaluate_examples(backend: HFBackend, inputs: VideoInputs, examples: list[Example], max_tokens: int = 32,
                      samples: int = 1, temperature: float = 0.0, accelerator=None,
                      per_query: bool = False) -> dict[str, Any]:  # fmt: skip
    """Held-out mIoU (and R1@0.5, well-formed rate) through the inference backend, as eval does;
    ``per_query`` adds each query's mean IoU (``ious``, in example order; one process only).
    Clips are decoded (or read from the frame cache) 16 at a time and dropped after use.

    With an ``accelerator`` of several processes, each scores its share of the examples and the
    sums are reduced (every process gets the result). The shares are padded to the same length so
    every process runs the same number of generation calls, which sharded (FSDP) models need.
    """
    backend.model.eval()
    params = GenerationParams(n=samples, temperature=temperature, max_tokens=max_tokens)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = list(examples[rank::world])
    share = -(-len(examples) // world)
    padded = mine + list(examples[: share - len(mine)])  # the padding is scored and thrown away
    texts = []
    for start in range(0, len(padded), 16):  # 16 clips in memory at a time, from the frame cache
        batch = [(inputs.request(e), inputs.clip(e.video)) for e in padded[start : start + 16]]
        chunk, _ = backend.sample(batch, params)
        texts += chunk
    iou_sum = hits = formed = count = 0.0
    per_example: list[float] = []
    for example, outputs in zip(mine, texts[: len(mine)], strict=True):
        mark = iou_sum
        for text in outputs:
            parsed = parse_answer(text, example.duration)
            formed += bool(
                parse_answer(text, mode="strict").ok or parsed.ok and text.strip().startswith("<time>")
            )
            iou = best_match(parsed.windows[0], example.windows)[0] if parsed.ok and parsed.windows else 0.0
            iou_sum += iou
            hits += iou >= 0.5
            count += 1
        per_example.append((iou_sum - mark) / max(len(outputs), 1))
    sums = torch.tensor([iou_sum, hits, formed, count], dtype=torch.float64)
    if world > 1:
        sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
    iou_sum, hits, formed, count = sums.tolist()
    result: dict[str, Any] = {"mIoU": iou_sum / count, "R1@0.5": hits / count, "well_formed": formed / count}
    if per_query:
        if world > 1:
            raise ValueError("per-query IoUs are kept by a single process only")
        result["ious"] = per_example
    return result


def load_run_data(cfg) -> tuple[list[Example], list[Example]]:
    """Training examples and the held-out ones of a trainer config (``data``/``eval_data``)."""
    from vtg_data.train.data import load_examples

    def load(data):
        return load_examples(data.path, video_root=data.video_root, revision=data.revision, config=data.config,
                             split=data.split, prompt=cfg.prompt, limit=data.limit)  # fmt: skip

    return load(cfg.data), (load(cfg.eval_data) if cfg.eval_data is not None else [])


@dataclass
class Run:
    """A trainer's state once set up: the model (wrapped for the devices), the backend around the
    bare model (rollouts and held-out eval), optimizer, schedule, data, and where it starts.

    With several processes (``accelerate launch`` or ``torchrun``), every process draws the same
    global batch (a function of seed and step) and trains on its share (``shard``); held-out
    evaluation is shared out the same way; only the main process writes metrics, checkpoints and
    the summary.
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
    skipped_uids: set = field(default_factory=set)
    stage: str = "train"

    @property
    def bare(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def shard(self, items: list) -> list:
        return items[self.accelerator.process_index :: self.accelerator.num_processes]

    def total(self, value: float) -> float:
        """The sum of a per-process number over all processes (itself with one process)."""
        tensor = torch.tensor(float(value), device=self.accelerator.device)
        return float(self.accelerator.reduce(tensor, reduction="sum"))

    def mean(self, value: float) -> float:
        """The mean of a per-process number over all processes."""
        return self.total(value) / self.accelerator.num_processes

    def largest(self, value: float) -> float:
        """The largest of a per-process number over all processes."""
        tensor = torch.tensor([float(value)], device=self.accelerator.device)
        return float(self.accelerator.gather(tensor).max())

    def token_scale(self, tokens: int) -> float:
        """The factor turning a per-process sum over tokens into this process's part of the mean
        over all processes' tokens. Gradients are averaged over processes, hence the process count:
        several processes then take exactly the step one process would."""
        return self.accelerator.num_processes / max(self.total(tokens), 1.0)

    def steps(self, cfg, per_step: int, last: int, *, sft: bool, keep_clip: bool = False,
              start_method: str | None = None):  # fmt: skip
        """This process's share of steps ``start_step``..``last - 1`` from a loader whose workers
        decode and prepare ahead (``cfg.workers``, ``cfg.prefetch``): an ``SFTStep`` per step for
        SFT (micro-batches collated in the worker), else the list of prepared examples."""
        dataset = PreparedExamples(self.examples, self.inputs, sft=sft, keep_clip=keep_clip,
                                   keep_bytes=cfg.keep_prepared_mib * 2**20)  # fmt: skip
        batches = StepBatches(len(self.examples), per_step, cfg.seed, self.start_step, last,
                              self.accelerator.process_index, self.accelerator.num_processes)  # fmt: skip
        collate_fn = (
            SFTCollator(self.backend.processor.tokenizer.pad_token_id, cfg.micro_batch) if sft else None
        )
        return step_loader(dataset, batches, cfg.workers, cfg.prefetch, collate_fn, start_method)

    def evaluate(self, cfg) -> dict[str, float]:
        return evaluate_examples(self.backend, self.inputs, self.held_out, cfg.eval_max_tokens,
                                 accelerator=self.accelerator)  # fmt: skip


def is_sharded(model) -> bool:
    """Whether the parameters are split over the processes (FSDP), so that every forward pass,
    generation included, is a collective that all processes must run together."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import DTensor

    return isinstance(model, FullyShardedDataParallel) or any(
        isinstance(p, DTensor) for p in model.parameters()
    )


def check_distribution(accelerator, per_step: int) -> None:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ValueError(
            "DeepSpeed is not supported by vtg-data's trainer (its optimizer and checkpoints are its own); "
            "shard the model with FSDP instead: accelerate launch --config_file scripts/accelerate/fsdp.yaml ..."
        )
    if per_step % accelerator.num_processes:
        raise ValueError(
            f"{per_step} examples per step do not split over {accelerator.num_processes} processes"
        )


def starting_model(cfg, backend, resumed: bool):
    """A frozen copy of the policy the run started from (the KL reference), or None with LoRA: the
    adapter's base is the starting policy, so the reference is the model with its adapter disabled
    and costs no memory. A resumed run reloads ``cfg.model``: the checkpoint is a later policy."""
    if cfg.lora_rank:
        return None
    if not resumed:
        return copy.deepcopy(backend.model).eval().requires_grad_(False)
    from vtg_data.lvlm.hf import load_model

    model = load_model(cfg.model, dtype=getattr(torch, cfg.param_dtype))
    return model.to(backend.model.device).eval().requires_grad_(False)


def prepare_reference(accelerator, reference):
    """The frozen reference on the devices: sharded like the policy under FSDP2 (a full copy per
    GPU would cost as much as the policy), otherwise placed without a gradient wrapper."""
    if getattr(accelerator, "is_fsdp2", False):
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        return fsdp2_prepare_model(accelerator, reference)
    return accelerator.prepare_model(reference, evaluation_mode=True)


def start_run(cfg, stage: str, per_step: int, backend=None, with_reference: bool = False) -> Run:
    """Seed, resume point, devices, model (LoRA, frozen tower, checkpointing), data, optimizer and
    schedule (restored on resume), config.json: what both trainers do before their first step."""
    from accelerate import Accelerator

    from vtg_data.stages.common import jsonable
    from vtg_data.train.model import build_backend, prepare_model

    torch.manual_seed(cfg.seed)
    accelerator = Accelerator(mixed_precision="bf16" if torch.cuda.is_available() else "no")
    check_distribution(accelerator, per_step)
    cfg.out.mkdir(parents=True, exist_ok=True)
    checkpoint = latest_checkpoint(cfg.out) if cfg.resume else None
    source = str(checkpoint) if checkpoint is not None else cfg.model
    backend = backend if backend is not None and checkpoint is None else build_backend(source, cfg)
    prepare_model(backend, cfg)
    reference = starting_model(cfg, backend, resumed=checkpoint is not None) if with_reference else None
    examples, held_out = load_run_data(cfg)
    inputs = VideoInputs(backend, cfg.policy, frame_cache(cfg))
    optimizer = torch.optim.AdamW(
        [p for p in backend.model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup, cfg.steps, cfg.lr_floor))
    model, optimizer = accelerator.prepare(backend.model, optimizer)
    if reference is not None:
        reference = prepare_reference(accelerator, reference)
    # FSDP replaces the parameters with sharded ones: clip and restore those, not the originals
    parameters = [p for p in model.parameters() if p.requires_grad]
    start_step = restore(checkpoint, model, optimizer, scheduler) if checkpoint is not None else 0
    backend.model = accelerator.unwrap_model(model)  # generation and eval run on the bare model
    backend.synced_gpus = is_sharded(model)  # generation steps in lockstep across processes
    log = None
    if accelerator.is_main_process:
        # the checkpoint's generation config is never the sampling distribution: say what it would have set
        config = {"stage": stage, "config": jsonable(asdict(cfg)), "started_from": source,
                  "processes": accelerator.num_processes, "sharded": backend.synced_gpus,
                  "checkpoint_generation_config_ignored": backend.checkpoint_sampling,
                  "positions": backend.positions or "the model's own"}  # fmt: skip
        write_json_atomic(cfg.out / "config.json", config)
        log = MetricsLog(cfg.out / "metrics.jsonl")
    return Run(accelerator, backend, model, optimizer, scheduler, parameters, examples, held_out, inputs,
               start_step, source, log, reference, stage=stage)  # fmt: skip


def end_step(
    cfg, run: Run, step: int, record: dict, history: list, progress=None, task=None, last: int = 0
) -> None:
    """One step's bookkeeping: periodic held-out eval (every process takes part), the metrics line
    (main process), periodic checkpoint (gathered on every process, written by the main one), and
    where the run is: the progress bar's step and loss or reward, or, when nothing draws a bar
    (output not a terminal: CI logs, the demo piped), one line every 5% of the run."""
    if run.held_out and cfg.eval_every and step % cfg.eval_every == 0:
        record |= {f"eval/{k}": v for k, v in run.evaluate(cfg).items()}
    if any(v != v for v in record.values() if isinstance(v, float)):
        raise FloatingPointError(f"NaN at step {step}: {record}")
    history.append(record)
    if run.is_main:
        run.log.write(record)
    if cfg.save_every and step % cfg.save_every == 0:
        save_checkpoint(run, cfg.out, step)
    if run.is_main:
        _say_where(run, step, record, last or step, progress, task)


def _say_where(run: Run, step: int, record: dict, last: int, progress, task) -> None:
    key = "reward" if "reward" in record else "loss"
    detail = f"{run.stage} step {step}/{last}, {key} {record[key]:.3f}"
    if "eval/mIoU" in record:
        detail += f", held-out mIoU {record['eval/mIoU']:.3f}"
    if task is not None and not getattr(progress, "disable", False):
        progress.update(task, advance=1, description=detail)
        return
    every = max(1, last // 20)
    if step % every == 0 or step == last:
        elapsed = record.get("seconds", 0.0)
        done = max(step - run.start_step, 1)
        left = elapsed / done * (last - step)
        print(f"{detail} ({elapsed:.0f} s, about {left:.0f} s left)", file=sys.stderr, flush=True)


def end_run(cfg, run: Run, last: int, history: list) -> dict[str, Any]:
    """The final checkpoint, the held-out evaluation and ``summary.json``."""
    run.accelerator.wait_for_everyone()
    final = save_checkpoint(run, cfg.out, last) if cfg.save_final else None
    result = {"final_checkpoint": str(final) if final and run.is_main else None, "steps": last,
              "history": history, "main_process": run.is_main}  # fmt: skip
    if run.held_out:
        result["eval"] = run.evaluate(cfg)
    if run.is_main:
        summary = {k: v for k, v in result.items() if k not in ("history", "main_process")}
        write_json_atomic(cfg.out / "summary.json", summary)
    return result


def frame_cache(cfg) -> FrameCache:
    """The run's frame cache: ``--frame-cache DIR`` (shared with eval and scoring), else a folder in
    the run; bounded to ``frame_cache_gib``, least recently used clips evicted first."""
    folder = cfg.frame_cache if cfg.frame_cache is not None else cfg.out / "frame-cache"
    return FrameCache(folder, max_bytes=int(cfg.frame_cache_gib * 2**30))


def record_skipped(cfg, run: Run, step: int, items: list) -> int:
    """Examples skipped for a damaged video in this step: appended to ``skipped.jsonl`` (each uid
    once per run and process), counted over all processes for the metrics."""
    skipped = [(uid, why) for item in items for uid, why in item.skipped]
    fresh = [(uid, why) for uid, why in skipped if uid not in run.skipped_uids]
    if fresh:
        lines = "".join(json.dumps({"step": step, "uid": uid, "error": why}) + "\n" for uid, why in fresh)
        with open(cfg.out / "skipped.jsonl", "a") as sink:  # one short append per step: lines stay whole
            sink.write(lines)
            sink.flush()
            os.fsync(sink.fileno())
        run.skipped_uids.update(uid for uid, _ in fresh)
    return int(run.total(len(skipped)))


def cache_counts(run: Run, items: list) -> dict[str, int]:
    """Frame-cache hits and decodes of a step's examples, over all processes."""
    hits = sum(1 for item in items if item.cache_hit)
    decoded = sum(1 for item in items if item.cache_hit is False)
    return {"frames_cached": int(run.total(hits)), "frames_decoded": int(run.total(decoded))}
