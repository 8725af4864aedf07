"""n = 8 rollouts of one video prompt: one shared prefill vs 8 prefills, on CPU.

A small random-weight Qwen2.5-VL (built offline) gets a 64-frame 224x224 video (2,048 video
tokens, so the prompt is dominated by video) and samples 8 completions of 16 tokens:

- independent: 8 separate ``generate`` calls, each with its own prefill;
- num_return_sequences: HF ``generate(num_return_sequences=8)``, which repeats the prompt 8 times
  before the prefill (one batched call, 8x the prefill work);
- shared: the hf backend, which prefills once and repeats the cache 8 times.

    python benchmarks/shared_prefill.py [--hidden 256 --layers 4 --frames 64 --tokens 16]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm import GenerationParams, Request
from vtg_data.lvlm.hf import HFBackend
from vtg_data.lvlm.tiny import make_tiny_model
from vtg_data.video import SamplingPolicy, sample_frames


def timed(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_model(Path(tmp) / "model", hidden_size=args.hidden, layers=args.layers)
        video = Path(tmp) / "v.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=s=224x224:r=8:d={args.frames / 2}",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video)], check=True)  # fmt: skip
        backend = HFBackend(model_dir, batch_size=1)
        policy = SamplingPolicy(fps=2.0, max_frames=args.frames, min_pixels=224 * 224, max_pixels=224 * 224)
        request = Request("q", get_prompt("tvg_r1_think").messages("the circle turns."), str(video), policy)
        clip = sample_frames(video, policy)
        batch = [(request, clip)]
        inputs = backend.prepare(batch)
        prompt_tokens = int(inputs["attention_mask"].sum())
        video_tokens = int((inputs["input_ids"] == backend.model.config.video_token_id).sum())
        params = GenerationParams(n=args.n, temperature=1.0, max_tokens=args.tokens)
        model = backend.model
        common = {"max_new_tokens": args.tokens, "do_sample": True, "temperature": 1.0, "min_new_tokens": args.tokens,
                  "pad_token_id": backend.processor.tokenizer.pad_token_id}  # fmt: skip

        def independent() -> None:
            with torch.inference_mode():
                for _ in range(args.n):
                    model.model.rope_deltas = None
                    model.generate(**inputs, **common)

        def repeated() -> None:
            with torch.inference_mode():
                model.model.rope_deltas = None
                model.generate(**inputs, num_return_sequences=args.n, **common)

        def shared() -> None:
            backend.sample(batch, params)

        independent_s, repeated_s, shared_s = timed(independent), timed(repeated), timed(shared)
    print(f"prompt {prompt_tokens} tokens ({video_tokens} video), n={args.n} rollouts x {args.tokens} tokens, "
          f"model hidden {args.hidden} x {args.layers} layers, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"independent prefills (8 generate calls): {independent_s:.2f} s")
    print(f"num_return_sequences (prompt repeated):  {repeated_s:.2f} s")
    print(f"shared prefill (hf backend):             {shared_s:.2f} s")
    print(
        f"speed-up: {independent_s / shared_s:.2f}x over independent, {repeated_s / shared_s:.2f}x over num_return_sequences"
    )


if __name__ == "__main__":
    main()
