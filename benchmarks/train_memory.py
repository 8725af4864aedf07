"""Training memory and waiting time against the dataset's size: the streaming input pipeline
(``train sft`` / ``train rl`` as they are) against the naive way (every example decoded and
processed up front and kept, as the trainers used to), in one run.

For synthetic corpora (``scenes`` layout) of each ``--sizes`` videos, a fresh process trains a
fixed number of steps (the tiny model, CPU) and this script samples the memory (PSS: shared pages
counted once) of that process and all its children (data-loading workers, decoder processes)
every 50 ms. Printed: peak memory per size and the largest over the smallest; the time from the trainer's start to its first
step; then, on the largest corpus, the steady step time while the workers decode every clip
(a fresh frame cache, more examples than steps use) against the same run with the cache warm;
and the number of clips a GRPO run decodes after ``score-difficulty`` filled the shared cache.

    python benchmarks/train_memory.py [--sizes 16 96 400] [--steps 8] [--batch 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FRAMES = {"fps": 2.0, "min_frames": 4, "max_frames": 32, "min_pixels": 112 * 112, "max_pixels": 112 * 112}


def tree_memory(root_pid: int) -> int:
    """Proportional resident bytes (PSS) of a process and its descendants, from /proc: pages shared
    by forked workers count once in all, not once per process as RSS would count them."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                total += next(int(line.split()[1]) * 1024 for line in handle if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
        todo += children.get(pid, [])
    return total


def measured(command: list[str]) -> tuple[dict, int]:
    """Run a child reporting JSON on its last line; its result and the peak RSS of its tree."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_memory(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode})")
    return json.loads(out.strip().splitlines()[-1]), peak[0]


# ---------------------------------------------------------------------------------------------
# The child: one training run


def child(args: argparse.Namespace) -> None:
    import torch

    from vtg_data.video import SamplingPolicy

    torch.set_num_threads(2)
    policy = SamplingPolicy(**FRAMES)
    root, out = Path(args.root), Path(args.out)
    began = time.perf_counter()
    if args.mode == "naive":
        print(json.dumps(naive_sft(root, Path(args.model), out, policy, args)))
        return
    from vtg_data.train.grpo import GRPOConfig, train_grpo
    from vtg_data.train.sft import SFTConfig, TrainData, train_sft

    data = TrainData(str(root / "normalized/synthetic/train.parquet"), root / "videos")
    common = {"model": args.model, "data": data, "out": out, "prompt": "compact", "policy": policy, "steps": args.steps,
              "save_every": 0, "save_final": False, "workers": args.workers,
              "frame_cache": Path(args.cache) if args.cache else None, "keep_prepared_mib": args.keep}  # fmt: skip
    if args.mode == "sft":
        result = train_sft(SFTConfig(**common, batch_size=args.batch, warmup=0))
    else:
        result = train_grpo(GRPOConfig(**common, prompts_per_step=args.batch, k=2, max_tokens=8))
    history = result["history"]
    first = began_first = history[0]["seconds"]
    step_times = [b["seconds"] - a["seconds"] for a, b in zip(history, history[1:], strict=False)]
    print(json.dumps({"first_step": round(time.perf_counter() - began - (history[-1]["seconds"] - first), 3),
                      "step": statistics.median(step_times) if step_times else began_first,
                      "decoded": sum(h["frames_decoded"] for h in history),
                      "cached": sum(h["frames_cached"] for h in history)}))  # fmt: skip


def naive_sft(root: Path, model: Path, out: Path, policy, args) -> dict:
    """The old way: every example prepared before the first step and kept for the whole run."""
    import torch

    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.data import VideoInputs, batch_indices, collate, load_examples

    began = time.perf_counter()
    backend = HFBackend(model)
    examples = load_examples(str(root / "normalized/synthetic/train.parquet"), video_root=root / "videos",
                             prompt="compact")  # fmt: skip
    inputs = VideoInputs(backend, policy)
    features = [inputs.sft_example(e) for e in examples]
    optimizer = torch.optim.AdamW(backend.model.parameters(), lr=1e-3)
    pad = backend.processor.tokenizer.pad_token_id
    first = None
    for step in range(args.steps):
        backend.model.train()
        batch = collate([features[i] for i in batch_indices(len(examples), args.batch, step, 0)], pad)
        backend.model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        first = first or time.perf_counter() - began
    return {"first_step": round(first, 3), "step": None, "decoded": len(examples), "cached": 0}


# ---------------------------------------------------------------------------------------------
# The parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 96, 400])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=int, default=512, help="keep_prepared_mib of the streaming runs")
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for corpora (default: a temporary one)"
    )
    # the child's arguments
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="sft", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    from vtg_data.corpora.synthetic import SyntheticConfig
    from vtg_data.lvlm.tiny import make_tiny_model
    from vtg_data.stages.download import DownloadConfig, download

    work = args.work or Path(tempfile.mkdtemp(prefix="train-memory-"))
    model = work / "model"
    if not model.is_dir():
        make_tiny_model(model, size="s", seed=0)
    roots = {}
    for size in args.sizes:
        roots[size] = work / f"corpus-{size}"
        if not (roots[size] / "normalized/synthetic/train.parquet").is_file():
            print(f"making a {size}-video corpus ...", flush=True)
            download(DownloadConfig("synthetic", roots[size], synthetic=SyntheticConfig(n_videos=size, seed=size,
                                                                                           max_duration=20.0)))  # fmt: skip

    def run(mode: str, size: int, cache: Path | None = None) -> tuple[dict, int]:
        out = Path(tempfile.mkdtemp(prefix=f"{mode}-{size}-", dir=work))
        command = [sys.executable, __file__, "--child", "--mode", mode, "--root", str(roots[size]), "--model",
                   str(model), "--out", str(out), "--steps", str(args.steps), "--batch", str(args.batch),
                   "--workers", str(args.workers), "--keep", str(args.keep)]  # fmt: skip
        if cache is not None:
            command += ["--cache", str(cache)]
        return measured(command)

    print(f"\n{args.steps} steps of {args.batch} examples, tiny model, {args.workers} workers\n")
    print(f"{'videos':>7} {'train rows':>10} | {'stream SFT':>11} {'first step':>10} | {'naive SFT':>10} "
          f"{'first step':>10} | {'stream GRPO':>11} {'first step':>10}")  # fmt: skip
    peaks: dict[str, list[int]] = {"sft": [], "naive": [], "grpo": []}
    firsts: dict[str, list[float]] = {"sft": [], "naive": [], "grpo": []}
    for size in args.sizes:
        import polars as pl

        rows = pl.read_parquet(roots[size] / "normalized/synthetic/train.parquet").height
        line = f"{size:>7} {rows:>10} |"
        for mode in ("sft", "naive", "grpo"):
            result, peak = run(mode, size)
            peaks[mode].append(peak)
            firsts[mode].append(result["first_step"])
            line += f" {peak / 2**30:>9.2f} GB {result['first_step']:>9.1f}s |"
        print(line.rstrip("|"), flush=True)
    for mode in ("sft", "grpo", "naive"):
        print(f"{mode:>6}: peak memory largest / smallest corpus {max(peaks[mode]) / min(peaks[mode]):.2f}x, "
              f"first step slowest / fastest {max(firsts[mode]) / min(firsts[mode]):.2f}x")  # fmt: skip
    print(f"largest corpus: naive / streaming SFT peak memory {peaks['naive'][-1] / peaks['sft'][-1]:.2f}x")

    largest = args.sizes[-1]
    cache = work / "frame-cache"
    decoding, _ = run("sft", largest, cache)
    warm, _ = run("sft", largest, cache)
    print(f"\nsteady SFT step, {args.workers} workers decoding every clip ({decoding['decoded']} decoded): "
          f"{decoding['step']:.3f} s; with the cache warm ({warm['cached']} read back): {warm['step']:.3f} s; "
          f"ratio {decoding['step'] / warm['step']:.2f}x")  # fmt: skip

    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.stages.difficulty import DifficultyConfig, score_difficulty
    from vtg_data.video import FrameCache, SamplingPolicy

    shared = work / "shared-cache"
    table = roots[args.sizes[0]] / "normalized/synthetic/train.parquet"
    scorer = HFBackend(model, frame_cache=FrameCache(shared))
    score_difficulty(DifficultyConfig(data=(table,), out=work / "scores", k=2, max_tokens=8, prompt="compact",
                                      policy=SamplingPolicy(**FRAMES), shards=1), backend=scorer)  # fmt: skip
    rl, _ = run("grpo", args.sizes[0], shared)
    print(
        f"score-difficulty decoded {scorer.frame_cache.misses} clips; the GRPO run after it decoded "
        f"{rl['decoded']} and read {rl['cached']} from the shared cache"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
