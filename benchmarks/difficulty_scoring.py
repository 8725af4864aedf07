"""Difficulty scoring throughput on CPU: the stage vs the naive loop, as samples/s and a ratio.

A small random Qwen2.5-VL (hidden 256, 4 layers) scores a synthetic corpus (several queries per
video) with k = 8 rollouts of 16 tokens:

- naive: for every sample, decode its video (full resolution, resize after) and call
  ``generate(num_return_sequences=k)`` (the prompt is prefilled k times);
- vtg-data: ``score-difficulty``'s in-process engine (each video decoded once, in-decoder resize,
  one shared prefill per sample, batches of prompts).

    python benchmarks/difficulty_scoring.py [--videos 4 --k 8 --tokens 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vtg_data.corpora.synthetic import SyntheticConfig
from vtg_data.grounding.prompts import get_prompt
from vtg_data.lvlm.hf import HFBackend
from vtg_data.lvlm.tiny import make_tiny_model
from vtg_data.stages.difficulty import DifficultyConfig, score_difficulty
from vtg_data.stages.download import DownloadConfig, download
from vtg_data.tables import load_rows
from vtg_data.video import SamplingPolicy, plan_sampling, stream_info

POLICY = SamplingPolicy(fps=2.0, max_frames=64, min_pixels=224 * 224, max_pixels=224 * 224)


def naive(rows: list[dict], backend: HFBackend, k: int, tokens: int) -> None:
    import decord
    from transformers.video_utils import VideoMetadata

    template = get_prompt("tvg_r1_think")
    for row in rows:
        info = stream_info(row["_video"])
        plan = plan_sampling(POLICY, duration=info.duration, native_fps=info.fps, num_frames=info.num_frames,
                             width=info.width, height=info.height)  # fmt: skip
        frames = torch.from_numpy(decord.VideoReader(row["_video"]).get_batch(list(plan.indices)).asnumpy())
        frames = F.interpolate(frames.permute(0, 3, 1, 2).float(), size=(plan.height, plan.width), mode="bilinear",
                               antialias=True).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()  # fmt: skip
        text = backend.processor.apply_chat_template(
            template.messages(row["query"]), add_generation_prompt=True, tokenize=False
        )
        metadata = VideoMetadata(total_num_frames=info.num_frames, fps=info.fps, width=plan.width, height=plan.height,
                                 duration=info.duration, frames_indices=list(plan.indices))  # fmt: skip
        inputs = backend.processor(text=[text], videos=[frames], video_metadata=[metadata], do_sample_frames=False,
                                   do_resize=False, return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            backend.model.model.rope_deltas = None
            backend.model.generate(**inputs, do_sample=True, temperature=1.0, num_return_sequences=k, max_new_tokens=tokens,
                                   min_new_tokens=tokens, pad_token_id=backend.processor.tokenizer.pad_token_id)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        download(DownloadConfig("synthetic", root, synthetic=SyntheticConfig(n_videos=args.videos, seed=3, min_duration=20,
                                                                             max_duration=40, width=320, height=240)))  # fmt: skip
        data = (root / "normalized/synthetic",)
        rows = load_rows(data)
        backend = HFBackend(make_tiny_model(root / "model", hidden_size=256, layers=4), batch_size=4)
        backend.model.generation_config.min_new_tokens = args.tokens  # random weights: full-length rollouts
        naive(rows[:1], backend, args.k, args.tokens)  # warm-up
        start = time.perf_counter()
        naive(rows, backend, args.k, args.tokens)
        naive_s = time.perf_counter() - start
        cfg = DifficultyConfig(
            data=data, out=root / "scores", k=args.k, max_tokens=args.tokens, policy=POLICY, shards=1
        )
        start = time.perf_counter()
        manifest = score_difficulty(cfg, backend=backend)
        ours_s = time.perf_counter() - start
    n = len(rows)
    print(f"{n} samples on {args.videos} videos ({n / args.videos:.1f} per video), k={args.k} rollouts x {args.tokens} tokens, "
          f"{torch.get_num_threads()} threads; scored {manifest['counts']['scored']}")  # fmt: skip
    print(f"naive (decode per sample, k prefills):       {naive_s:6.2f} s  {n / naive_s:6.2f} samples/s")
    print(f"score-difficulty (in-process engine):        {ours_s:6.2f} s  {n / ours_s:6.2f} samples/s")
    print(f"speed-up: {naive_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
