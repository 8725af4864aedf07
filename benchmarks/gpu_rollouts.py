"""Rollout throughput of the hf backend on a GPU, with a random-weight Qwen2.5-VL-3B-sized model.

Workload (as in the reference measurement): prompts of a 64-frame 224x224 video (2,048 video
tokens) and a query, 8 samples of 256 tokens each, bf16. Compared:

- plain ``generate``: 8 prompts, ``num_return_sequences=8`` (the prompt repeated 8 times, then
  prefilled);
- hf backend, 8 prompts x 8 samples: one shared prefill per prompt, cache repeated;
- hf backend, larger batches: 32 prompts x 8 samples per decode step (decoding is bound by
  per-step overhead, so more sequences per step is where throughput comes from).

Prints rollouts/s and tokens/s, and the ratio to plain ``generate``. Exits cleanly without CUDA.

    python benchmarks/gpu_rollouts.py [--prompts 8 --big-prompts 32 --samples 8 --tokens 256]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--big-prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument(
        "--size", choices=["3b", "tiny"], default="3b", help="tiny: a CPU smoke run of this script"
    )
    args = parser.parse_args()

    import torch

    if args.size == "3b" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (run with --size tiny for a CPU smoke run)")
        return 0
    from transformers import Qwen2_5_VLForConditionalGeneration

    from vtg_data.grounding.prompts import get_prompt
    from vtg_data.lvlm import GenerationParams, Request
    from vtg_data.lvlm.base import BackendIdentity
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.lvlm.tiny import QWEN25_VL_3B, build_config, build_processor, build_tokenizer
    from vtg_data.video import DecodedClip, SamplingPlan

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = build_tokenizer()
    config = build_config(tokenizer, shape=QWEN25_VL_3B if args.size == "3b" else None)
    start = time.perf_counter()
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype).eval()
    model.generation_config.min_new_tokens = args.tokens  # random weights: never stop early
    params_b = sum(p.numel() for p in model.parameters()) / 1e9
    print(
        f"model: {params_b:.2f} B parameters, {dtype}, built in {time.perf_counter() - start:.1f} s on {device}"
    )
    backend = HFBackend.from_loaded(
        model, build_processor(tokenizer), BackendIdentity("hf", f"random-qwen2.5-vl-{args.size}")
    )
    rng = np.random.default_rng(0)
    side = 224

    def clip() -> DecodedClip:
        n = args.frames
        plan = SamplingPlan(
            tuple(range(0, 4 * n, 4)), tuple(i / 2 for i in range(n)), 2.0, side, side, n / 2, 8.0, 4 * n
        )
        frames = rng.integers(0, 255, (n, side, side, 3), dtype=np.uint8)
        return DecodedClip(frames, np.arange(n) / 2.0, 2.0, plan, "synthetic")

    def batch(count: int):
        template = get_prompt("tvg_r1_think")
        return [
            (Request(f"q{i}", template.messages(f"query number {i:04d}: when does it happen?"), None), clip())
            for i in range(count)
        ]

    small, big = batch(args.prompts), batch(args.big_prompts)
    params = GenerationParams(n=args.samples, temperature=1.0, max_tokens=args.tokens)
    inputs = backend.prepare(small)
    print(f"prompt: {int(inputs['attention_mask'][0].sum())} tokens, "
          f"{int((inputs['input_ids'][0] == config.video_token_id).sum())} of them video")  # fmt: skip

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def plain() -> None:
        with torch.inference_mode():
            model.model.rope_deltas = None
            model.generate(**inputs, num_return_sequences=args.samples, do_sample=True, temperature=1.0,
                           max_new_tokens=args.tokens, pad_token_id=tokenizer.pad_token_id)  # fmt: skip

    def measure(name: str, fn, rollouts: int) -> float:
        sync()
        begin = time.perf_counter()
        fn()
        sync()
        seconds = time.perf_counter() - begin
        rate = rollouts / seconds
        print(f"{name:<44} {seconds:7.2f} s  {rate:7.2f} rollouts/s  {rate * args.tokens:9.0f} tokens/s")
        return rate

    backend.sample(small[:1], GenerationParams(n=2, temperature=1.0, max_tokens=4))  # warm-up
    base = measure(f"plain generate ({args.prompts}x{args.samples})", plain, args.prompts * args.samples)
    shared = measure(f"hf backend, shared prefill ({args.prompts}x{args.samples})",
                     lambda: backend.sample(small, params), args.prompts * args.samples)  # fmt: skip
    wide = measure(f"hf backend, {args.big_prompts}x{args.samples} per step",
                   lambda: backend.sample(big, params), args.big_prompts * args.samples)  # fmt: skip
    print(
        f"speed-up over plain generate: shared prefill {shared / base:.2f}x, larger batches {wide / base:.2f}x"
    )
    if device == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
