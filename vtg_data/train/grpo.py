"""``vtg-data train rl``: GRPO with the grounding rewards, video as video.

Each step: ``prompts_per_step`` prompts, ``k`` rollouts each through the inference backend (one
shared prefill per prompt, special tokens other than the end of turn suppressed), rewards from a
preset of ``grounding.rewards`` against the ground-truth windows, group-normalized advantages
((r - mean) / (std + eps), or without the division), then ``updates_per_step`` updates of the
clipped policy objective on the completion tokens (token-level mean), with an optional KL to the
frozen starting model and an optional entropy bonus. Logged per step: reward and each component,
``frac_reward_zero_std``, completion lengths, KL, entropy, learning rate.

TVG-R1's published settings are the ``tvg_r1`` preset (k 8, lr 1e-6, no KL, clip 0.2, 64 frames,
temperature 1.0, entropy 1e-3).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from vtg_data.grounding.rewards import PRESETS, compute_reward
from vtg_data.lvlm import GenerationParams
from vtg_data.lvlm.sampling import policy_logprobs
from vtg_data.train.options import TrainData, TrainerOptions, batch_key
from vtg_data.train.rollouts import BATCHINGS, SYNC_CHECKS
from vtg_data.video import SamplingPolicy


@dataclass(frozen=True)
class GRPOConfig(TrainerOptions):
    model: str
    data: TrainData
    out: Path
    reward: str = "tvg_r1"
    steps: int = 100
    prompts_per_step: int = 8
    k: int = 8
    temperature: float = 1.0
    max_tokens: int = 64
    lr: float = 2e-4
    warmup: int = 0
    lr_floor: float = 1.0
    clip: float = 0.2
    beta: float = 0.0  # KL coefficient to the frozen starting model
    entropy: float = 0.0
    scale_by_std: bool = True
    updates_per_step: int = 1
    rollouts: str = "hf"  # hf: the policy samples itself; vllm: an in-process vLLM engine, synced every step
    vllm_gpu_memory: float = 0.3  # the engine's share of the GPU memory (the trainer needs the rest)
    vllm_max_model_len: int | None = None
    vllm_options: str | None = None  # more engine arguments, a JSON object
    vllm_check_sync: str = "first"  # first | every | off: the engine's answer checked against the trainer's
    vllm_sync_tolerance: float = 0.1  # largest log-probability difference a landed sync may show
    rollout_batching: str = "padded"  # hf rollouts: one left-padded batch, or one batch per prompt length
    save_every: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward not in PRESETS:
            raise ValueError(f"reward must be one of {sorted(PRESETS)}")
        if self.k < 2:
            raise ValueError("GRPO needs k >= 2 rollouts per prompt")
        if not self.temperature > 0:
            raise ValueError("GRPO samples its rollouts: temperature must be > 0")
        if self.rollouts not in ("hf", "vllm"):
            raise ValueError(f"rollouts must be 'hf' or 'vllm', not {self.rollouts!r}")
        if self.rollout_batching not in BATCHINGS:
            raise ValueError(f"rollout_batching must be one of {BATCHINGS}")
        if self.vllm_check_sync not in SYNC_CHECKS:
            raise ValueError(f"vllm_check_sync must be one of {SYNC_CHECKS}")
        if self.vllm_options:
            options = json.loads(self.vllm_options)
            if not isinstance(options, dict):
                raise ValueError("vllm_options must be a JSON object of vLLM engine arguments")


PRESET_CONFIGS = {
    # TVG-R1 (EasyR1 fork): 8 rollouts, lr 1e-6, no KL, clip 0.2, entropy 1e-3, 64 frames, 2048x28x28 pixels
    "tvg_r1": {"k": 8, "lr": 1e-6, "beta": 0.0, "clip": 0.2, "entropy": 1e-3, "temperature": 1.0, "reward": "tvg_r1",
               "policy": SamplingPolicy(fps=2.0, max_frames=64, min_pixels=4 * 28 * 28, total_pixels=2048 * 28 * 28,
                                        max_pixels=128 * 28 * 28)},
}  # fmt: skip


def with_preset(cfg: GRPOConfig, preset: str) -> GRPOConfig:
    if preset not in PRESET_CONFIGS:
        raise ValueError(f"unknown preset {preset!r}; presets: {sorted(PRESET_CONFIGS)}")
    return replace(cfg, **PRESET_CONFIGS[preset])


def _sequence_batch(
    prompts: list[dict], completions: list[torch.Tensor], pad: int
) -> tuple[dict, torch.Tensor]:
    """Prompt + completion rows (right-padded) and a mask of the completion tokens."""
    from vtg_data.train.data import collate

    items = []
    for prompt, completion in zip(prompts, completions, strict=True):
        ids = torch.cat([prompt["input_ids"][0], completion])
        item = {
            k: v for k, v in prompt.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")
        }
        item["input_ids"] = ids
        item["labels"] = torch.cat([torch.full_like(prompt["input_ids"][0], -100), completion])
        if "mm_token_type_ids" in prompt:
            item["mm_token_type_ids"] = torch.cat(
                [prompt["mm_token_type_ids"][0], torch.zeros_like(completion)]
            )
        items.append(item)
    batch = collate(items, pad)
    mask = batch.pop("labels") != -100
    return batch, mask


def _token_logps(
    model, batch: dict, mask: torch.Tensor, temperature: float = 1.0, suppressed: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-probabilities and entropies of the completion tokens (``mask``), and the mask they align with.

    They are those of the distribution the rollouts were drawn from (``lvlm.sampling``): logits
    divided by the sampling temperature, the suppressed special tokens excluded. Scoring the raw
    logits instead would push the policy along the gradient of another distribution than the one
    that sampled whenever the temperature is not 1.

    Token t is scored from the logits at t - 1. Only the logits from the first completion token on
    are computed (``logits_to_keep``): a 2,500-token video prompt then costs no vocabulary-sized
    logits, which at real sizes is the difference between fitting in memory and not.
    """
    from vtg_data.lvlm.hf import rope_owner

    inner = rope_owner(model)
    if inner is not None:
        inner.rope_deltas = None
    length = batch["input_ids"].shape[1]
    first = int(mask.any(0).nonzero()[0]) if mask.any() else length - 1
    keep = length - first + 1
    logits = model(**batch, logits_to_keep=keep).logits[:, :-1].float()
    targets = batch["input_ids"][:, first:]
    logp_all = policy_logprobs(logits, temperature, suppressed)
    logps = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    probs = logp_all.exp()
    entropy = -(probs * logp_all.masked_fill(probs == 0, 0.0)).sum(-1)
    m = mask[:, first:]
    # padding after the end of turn is a suppressed token (log-probability -inf): zero, not -inf * 0
    return logps.masked_fill(~m, 0.0), entropy.masked_fill(~m, 0.0), m


def clipped_objective(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, clip: float):
    """PPO's clipped surrogate per token: min(r A, clip(r, 1 - c, 1 + c) A), r = p / p_old."""
    ratio = torch.exp(logps - old_logps)
    return torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)


def _reference_logps(run, batch: dict, mask: torch.Tensor, **distribution) -> torch.Tensor:
    """Completion log-probabilities under the starting policy: the frozen copy, or with LoRA the
    model with its adapter disabled."""
    if run.reference is not None:
        return _token_logps(run.reference, batch, mask, **distribution)[0]
    with run.bare.disable_adapter():
        return _token_logps(run.model, batch, mask, **distribution)[0]


def sync_check(engine) -> dict:
    """This step's check of the weight sync (``VLLMRollouts.check_sync``), for the step's record."""
    checks = getattr(engine, "sync_checks", None)
    if not checks or checks[-1]["sync"] != engine.syncs:
        return {}
    return {"sync_route": engine.sync_route, "sync_check": checks[-1]}


def make_rollouts(cfg: GRPOConfig, run):
    """The rollout engine of a run (``cfg.rollouts``)."""
    from vtg_data.train.rollouts import PolicyRollouts, VLLMRollouts

    if cfg.rollouts == "hf":
        return PolicyRollouts(run.backend, cfg.rollout_batching)
    if run.accelerator.num_processes > 1:
        raise ValueError(
            "--rollouts vllm runs one engine beside one trainer process; with several processes use --rollouts hf"
        )
    from vtg_data.lvlm.hf import adapter_base, is_adapter_folder

    # the engine loads a full model; the first sync brings the adapted weights
    source = adapter_base(run.source) if is_adapter_folder(run.source) else run.source
    return VLLMRollouts(source, run.backend.processor, run.backend.suppress_tokens,
                        gpu_memory_utilization=cfg.vllm_gpu_memory, max_model_len=cfg.vllm_max_model_len,
                        engine_options=json.loads(cfg.vllm_options) if cfg.vllm_options else None,
                        check_sync=cfg.vllm_check_sync, sync_tolerance=cfg.vllm_sync_tolerance)  # fmt: skip


def train_grpo(cfg: GRPOConfig, progress=None, backend=None, rollouts=None) -> dict[str, Any]:
    """Train; ``backend`` passes a model already in memory (an ``HFBackend``), else ``cfg.model`` is
    loaded; ``rollouts`` passes a rollout engine already built (else ``cfg.rollouts`` names one)."""
    from vtg_data.train.common import (
        batch_indices,
        cache_counts,
        end_run,
        end_step,
        micro_batches,
        record_skipped,
        start_run,
    )

    run = start_run(cfg, "train rl", cfg.prompts_per_step, backend, with_reference=cfg.beta > 0)
    engine = rollouts if rollouts is not None else make_rollouts(cfg, run)
    model, accelerator, backend, inputs, optimizer = (
        run.model,
        run.accelerator,
        run.backend,
        run.inputs,
        run.optimizer,
    )
    tokenizer = backend.processor.tokenizer
    pad = tokenizer.pad_token_id
    params = GenerationParams(n=cfg.k, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=cfg.seed)
    # the loss scores the rollouts under the distribution that drew them
    distribution = {"temperature": cfg.temperature, "suppressed": tuple(backend.suppress_tokens)}
    last = min(cfg.steps, cfg.stop_after or cfg.steps)
    task = (
        progress.add_task("grpo", total=last, completed=run.start_step) if progress and run.is_main else None
    )
    history = []
    began = time.perf_counter()
    # this process's prompts of each step (each prompt's group stays whole), prepared ahead by the
    # loader's workers; the frames themselves only for an engine that decodes from them (vLLM)
    loader = run.steps(cfg, cfg.prompts_per_step, last, sft=False, keep_clip=engine.needs_clips,
                       start_method=getattr(engine, "worker_start_method", None))  # fmt: skip
    for step, items in zip(range(run.start_step, last), loader, strict=True):
        step_began = time.perf_counter()
        scheduled = run.examples.uids(batch_indices(len(run.examples), cfg.prompts_per_step, step, cfg.seed))
        picked = [item.example for item in items]
        batch = [(inputs.request(item.example), item.clip) for item in items]
        model.eval()
        params_step = replace(params, seed=cfg.seed * 100_003 + step)  # the prompts' uids vary it per process
        prompts = [item.prompt for item in items]
        syncing = time.perf_counter()
        engine.sync(run.bare)
        synced = time.perf_counter()
        completions = engine.sample(batch, params_step, prompts)
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        rewards, components = [], {}
        for i, text in enumerate(texts):
            example = picked[i // cfg.k]
            result = compute_reward(
                text,
                {"uid": example.uid, "windows": example.windows, "duration": example.duration},
                cfg.reward,
            )
            rewards.append(result.total)
            for name, value in result.components.items():
                components.setdefault(name, []).append(value)
        grouped = torch.tensor(rewards).view(len(picked), cfg.k)
        mean, std = grouped.mean(1, keepdim=True), grouped.std(1, unbiased=False, keepdim=True)
        advantages = (grouped - mean) / (std + 1e-4) if cfg.scale_by_std else grouped - mean
        advantages = advantages.view(-1)
        prompts = [prompt for prompt in prompts for _ in range(cfg.k)]
        rolled_out = time.perf_counter()
        chunks = []  # (batch, mask, advantages, old log-probs, reference log-probs) per micro-batch
        for rows in micro_batches(len(completions), cfg.micro_batch):
            seq, mask = _sequence_batch([prompts[i] for i in rows], [completions[i] for i in rows], pad)
            seq = {k: v.to(accelerator.device) for k, v in seq.items()}
            mask = mask.to(accelerator.device)
            with torch.no_grad():
                # with one update per step the policy updated is the one that sampled: its log-probs in
                # the update are the old ones (detached), and a forward pass here would only repeat them
                old_logps = (
                    _token_logps(model, seq, mask, **distribution)[0] if cfg.updates_per_step > 1 else None
                )
                ref_logps = _reference_logps(run, seq, mask, **distribution) if cfg.beta > 0 else None
            adv = advantages[rows.start : rows.stop].to(accelerator.device).unsqueeze(1)
            chunks.append((seq, mask, adv, old_logps, ref_logps))
        # token-level mean over the whole step: all micro-batches, all processes
        scale = run.token_scale(sum(int(mask.sum()) for _, mask, *_ in chunks))
        model.train()
        for _ in range(cfg.updates_per_step):
            totals = {"loss": 0.0, "kl": 0.0, "entropy": 0.0}
            for seq, mask, adv, old_logps, ref_logps in chunks:
                logps, entropy, m = _token_logps(model, seq, mask, **distribution)
                old = old_logps if old_logps is not None else logps.detach()
                loss = -(clipped_objective(logps, old, adv, cfg.clip) * m).sum() * scale
                kl = torch.zeros((), device=logps.device)
                if ref_logps is not None:
                    delta = (ref_logps - logps) * m
                    kl = ((torch.exp(delta) - delta - 1) * m).sum() * scale
                    loss = loss + cfg.beta * kl
                mean_entropy = entropy.sum() * scale
                loss = loss - cfg.entropy * mean_entropy
                accelerator.backward(loss)
                totals["loss"] += float(loss.detach())
                totals["kl"] += float(kl.detach())
                totals["entropy"] += float(mean_entropy.detach())
            accelerator.clip_grad_norm_(run.parameters, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        run.scheduler.step()
        lengths = [len(c) for c in completions]
        record = {
            "step": step + 1,
            "reward": run.mean(statistics.fmean(rewards)),
            **{f"reward/{k}": run.mean(statistics.fmean(v)) for k, v in components.items()},
            "frac_reward_zero_std": run.mean(float((std.view(-1) == 0).float().mean())),
            "completion_length": run.mean(statistics.fmean(lengths)),
            "completion_length_max": int(run.largest(max(lengths))),
            "completion_tokens": int(run.total(sum(lengths))),
            "kl": run.mean(totals["kl"]),
            "entropy": run.mean(totals["entropy"]),
            "loss": run.mean(totals["loss"]),
            "lr": run.scheduler.get_last_lr()[0],
            "batch": batch_key(scheduled),
            "skipped": record_skipped(cfg, run, step + 1, items),
            **cache_counts(run, items),
            "rollout_seconds": round(rolled_out - step_began, 3),  # the weight sync included
            "sync_seconds": round(synced - syncing, 3),
            **sync_check(engine),
            "update_seconds": round(time.perf_counter() - rolled_out, 3),
            "seconds": round(time.perf_counter() - began, 3),
        }
        if torch.cuda.is_available():
            record["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        end_step(cfg, run, step + 1, record, history, progress, task, last)
    return end_run(cfg, run, last, history)
