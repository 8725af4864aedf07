"""GRPO step cost on a GPU: ``train_grpo`` itself, on a random-weight Qwen2.5-VL-3B-sized model with
64-frame synthetic videos, bf16.

Workload: the synthetic corpus (ffmpeg-encoded 32 s videos at 224x224, sampled at 2 fps: 64
frames, 2,048 video tokens per prompt), ``--prompts`` prompts x ``--k`` rollouts of ``--tokens``
tokens per step (random weights never stop early), then the clipped-objective update on the
completion tokens in micro-batches with gradient checkpointing. Reported, over the steps after the
first (CUDA warm-up): step time split into rollouts and update, rollout tokens/s, peak GPU memory,
for the hf rollouts in one left-padded batch and one batch per prompt length
(``--rollout-batching``); and, on the same prompts, the naive rollout (``generate`` with
``num_return_sequences``: the prompt repeated k times before the prefill) for a ratio against the
trainer's shared-prefill rollouts (neither timing includes decoding the videos or running the
processor: the trainer's data-loading workers do that ahead of the step).

Needs the project's video and vlm extras and ffmpeg. Exits cleanly without CUDA (``--size tiny``
runs the same path on CPU as a smoke test).

    python benchmarks/gpu_grpo.py [--steps 4 --prompts 2 --k 8 --tokens 256 --micro-batch 4] [--rollouts vllm]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--size", choices=["3b", "tiny"], default="3b", help="tiny: a CPU smoke run of this script"
    )
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step")
    parser.add_argument("--k", type=int, default=8, help="rollouts per prompt")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per rollout")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--side", type=int, default=224, help="frame width and height in pixels")
    parser.add_argument("--micro-batch", type=int, default=4, help="sequences per forward/backward")
    parser.add_argument("--param-dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--rollouts", default="hf", choices=["hf", "vllm"],
                        help="vllm: the in-process engine synced every step (needs vLLM installed)")  # fmt: skip
    parser.add_argument("--vllm-gpu-memory", type=float, default=0.3)
    parser.add_argument("--rollout-batching", default="both", choices=["padded", "equal-length", "both"],
                        help="hf rollouts: one left-padded batch, one batch per prompt length, or both in turn")  # fmt: skip
    args = parser.parse_args()

    import torch

    if args.size == "3b" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (run with --size tiny for a CPU smoke run)")
        return 0
    import importlib.util
    import shutil

    missing = [
        m for m in ("polars", "decord", "transformers", "datasets") if importlib.util.find_spec(m) is None
    ]
    missing += [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if args.rollouts == "vllm" and importlib.util.find_spec("vllm") is None:
        missing.append("vllm")
    if missing:
        hint = "pip install -e '.[video,vlm,hub]' and ffmpeg" + (
            ", vLLM beside them" if "vllm" in missing else ""
        )
        print(f"cannot run: missing {', '.join(missing)} ({hint})")
        return 2
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vtg_data.corpora.synthetic import SyntheticConfig
    from vtg_data.lvlm.base import BackendIdentity
    from vtg_data.lvlm.hf import HFBackend, rope_owner
    from vtg_data.lvlm.tiny import QWEN25_VL_3B, build_config, build_processor, build_tokenizer
    from vtg_data.stages.download import DownloadConfig, download
    from vtg_data.train.data import VideoInputs, load_examples
    from vtg_data.train.grpo import GRPOConfig, train_grpo
    from vtg_data.train.options import TrainData
    from vtg_data.video import SamplingPolicy

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    work = Path(tempfile.mkdtemp(prefix="gpu-grpo-"))
    seconds = args.frames / 2.0  # sampled at 2 fps
    begin = time.perf_counter()
    download(DownloadConfig("synthetic", work, synthetic=SyntheticConfig(
        n_videos=max(8, 2 * args.prompts * args.steps), seed=0, min_duration=seconds, max_duration=seconds,
        width=args.side, height=args.side, layout="single_event")))  # fmt: skip
    print(f"corpus: {time.perf_counter() - begin:.1f} s to encode the synthetic videos")

    tokenizer = build_tokenizer()
    config = build_config(tokenizer, shape=QWEN25_VL_3B if args.size == "3b" else None)
    dtype = getattr(torch, args.param_dtype) if cuda else torch.float32
    begin = time.perf_counter()
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.min_new_tokens = args.tokens  # random weights: never stop early
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, {dtype}, "
          f"built in {time.perf_counter() - begin:.1f} s on {device}")  # fmt: skip
    backend = HFBackend.from_loaded(
        model, build_processor(tokenizer), BackendIdentity("hf", f"random-qwen2.5-vl-{args.size}")
    )
    pixels = args.side * args.side
    policy = SamplingPolicy(
        fps=2.0, min_frames=4, max_frames=args.frames, min_pixels=pixels, max_pixels=pixels
    )
    data = TrainData(str(work / "normalized/synthetic/train.parquet"), work / "videos")
    source = backend.identity.model
    if args.rollouts == "vllm":  # the engine loads a folder; each step's sync then brings the policy
        source = str(work / "model")
        model.save_pretrained(source)
        backend.processor.save_pretrained(source)
    batchings = ["padded", "equal-length"] if args.rollout_batching == "both" else [args.rollout_batching]
    if args.rollouts == "vllm":
        batchings = batchings[:1]  # the engine batches by itself
    rollout = None
    for batching in batchings:
        cfg = GRPOConfig(model=source, data=data, rollouts=args.rollouts, vllm_gpu_memory=args.vllm_gpu_memory,
                         out=work / f"run-{batching}", prompt="tvg_r1_think", policy=policy, steps=args.steps,
                         prompts_per_step=args.prompts, k=args.k, max_tokens=args.tokens, lr=1e-6,
                         micro_batch=args.micro_batch, gradient_checkpointing=cuda,
                         param_dtype=args.param_dtype if cuda else "float32", rollout_batching=batching,
                         save_every=0, save_final=False)  # fmt: skip
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        history = train_grpo(cfg, backend=backend)["history"]
        measured = history[1:] or history
        step_rollout = statistics.fmean(h["rollout_seconds"] for h in measured)
        rollout = step_rollout if rollout is None else min(rollout, step_rollout)
        update = statistics.fmean(h["update_seconds"] for h in measured)
        tokens = statistics.fmean(h["completion_tokens"] for h in measured)
        rollouts = args.prompts * args.k
        print(f"GRPO step ({args.prompts} prompts x {args.k} rollouts x {args.tokens} tokens, micro-batch "
              f"{args.micro_batch}, rollouts from {args.rollouts}, {batching} batches), mean of steps 2-{len(history)}:")  # fmt: skip
        print(f"  step {step_rollout + update:7.2f} s = rollouts {step_rollout:7.2f} s + update {update:7.2f} s "
              f"({step_rollout / (step_rollout + update):.0%} generating)")  # fmt: skip
        print(f"  rollouts: {rollouts / step_rollout:6.2f} rollouts/s, {tokens / step_rollout:8.0f} tokens/s")
        print(f"  update:   {tokens / update:8.0f} completion tokens/s through forward + backward")
        print(f"  weight sync: {statistics.fmean(h['sync_seconds'] for h in measured):.2f} s per step")
        if cuda:
            print(f"  peak GPU memory: {max(h['gpu_peak_gib'] for h in history):.1f} GiB")

    # The naive rollout on the same prompts: the prompt repeated k times, then prefilled.
    model = backend.model
    inputs = VideoInputs(backend, policy)
    examples = load_examples(data.path, video_root=data.video_root, prompt=cfg.prompt, limit=args.prompts)
    model.eval()
    if cuda:
        torch.cuda.synchronize()
    # like the trainer's rollout time, which no longer includes decoding and processing: the
    # trainer's data-loading workers prepare the prompts ahead
    prepared = backend.prepare([(inputs.request(ex), inputs.clip(ex.video)) for ex in examples])
    begin = time.perf_counter()
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
        owner = rope_owner(model)
        if owner is not None:
            owner.rope_deltas = None
        model.generate(**prepared, num_return_sequences=args.k, do_sample=True, temperature=1.0,
                       max_new_tokens=args.tokens, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    if cuda:
        torch.cuda.synchronize()
    naive = time.perf_counter() - begin
    print(f"naive generate (num_return_sequences): {naive:7.2f} s, {rollouts / naive:6.2f} rollouts/s; "
          f"time ratio naive / trainer rollouts (the faster batching) {naive / rollout:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
