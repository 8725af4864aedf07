"""The trainers' input pipeline: bounded by the prefetch depth, the same batches with or without
worker processes and across a resume, a damaged video skipped and recorded, and the frame cache
shared with difficulty scoring."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time

import pytest
from events import event_corpus

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(900)

from vtg_data.video import FrameCache, SamplingPolicy  # noqa: E402

POLICY = SamplingPolicy(fps=2.0, min_frames=4, max_frames=16, min_pixels=56 * 56, max_pixels=56 * 56)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return event_corpus(
        tmp_path_factory.mktemp("stream"), n_videos=12, seed=5, min_duration=6, max_duration=10
    )


@pytest.fixture(scope="module")
def init(xs_model):
    return xs_model


def data(root, videos=None):
    from vtg_data.train.options import TrainData

    return TrainData(str(root / "normalized/synthetic/train.parquet"), videos or root / "videos")


class CountingExamples:
    """Wraps ``PreparedExamples`` and counts, across worker processes, the examples made."""

    def __init__(self, inner, made):
        self.inner, self.made = inner, made

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, index):
        with self.made.get_lock():
            self.made.value += 1
        return self.inner[index]


def test_prepared_examples_never_run_further_ahead_than_the_prefetch_depth(root, init):
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.data import PreparedExamples, StepBatches, VideoInputs, load_examples, step_loader

    backend = HFBackend(init)
    table = load_examples(data(root).path, video_root=root / "videos", prompt="compact")
    made = multiprocessing.Value("i", 0)
    dataset = CountingExamples(PreparedExamples(table, VideoInputs(backend, POLICY), sft=True), made)
    workers, prefetch, per_step, steps = 2, 2, 3, 12
    used = 0
    for items in step_loader(dataset, StepBatches(len(table), per_step, 0, 0, steps), workers, prefetch):
        used += len(items)
        time.sleep(0.05)  # a slow trainer: the workers run ahead as far as they may
        # in flight: at most workers x prefetch steps, plus the one a worker is building
        assert made.value - used <= (workers * prefetch + workers) * per_step
    assert used == made.value == steps * per_step  # nothing prepared that was not used


def sft_config(root, init, out, **changes):
    from vtg_data.train.sft import SFTConfig

    base = {"model": str(init), "data": data(root), "out": out, "prompt": "compact", "policy": POLICY, "steps": 6,
            "batch_size": 4, "lr": 5e-3, "warmup": 0, "save_every": 3, "save_final": False, "workers": 0}  # fmt: skip
    return SFTConfig(**(base | changes))


def test_the_same_batches_and_losses_with_or_without_workers_and_across_a_resume(root, init, tmp_path):
    from vtg_data.train.sft import train_sft

    plain = train_sft(sft_config(root, init, tmp_path / "plain"))["history"]
    workers = train_sft(sft_config(root, init, tmp_path / "workers", workers=2, prefetch=1))["history"]
    assert [h["batch"] for h in plain] == [h["batch"] for h in workers]
    assert [h["loss"] for h in plain] == pytest.approx([h["loss"] for h in workers], rel=1e-5, abs=1e-6)
    train_sft(sft_config(root, init, tmp_path / "resumed", workers=2, stop_after=3))
    resumed = train_sft(sft_config(root, init, tmp_path / "resumed", workers=2, resume=True))["history"]
    assert [h["step"] for h in resumed] == [4, 5, 6]
    assert [h["batch"] for h in resumed] == [h["batch"] for h in plain[3:]]
    assert [h["loss"] for h in resumed] == pytest.approx([h["loss"] for h in plain[3:]], rel=1e-5, abs=1e-6)
    # through the run's frame cache: each video decoded at its first use only (6 steps x 4 > the table)
    import polars as pl

    videos = pl.read_parquet(root / "normalized/synthetic/train.parquet")["video_path"].n_unique()
    assert sum(h["frames_decoded"] for h in plain) == videos
    assert sum(h["frames_cached"] for h in plain) == 6 * 4 - videos


def test_a_damaged_video_is_skipped_recorded_and_replaced(root, init, tmp_path):
    import polars as pl

    from vtg_data.train.sft import train_sft

    videos = tmp_path / "videos"
    shutil.copytree(root / "videos", videos)
    table = pl.read_parquet(root / "normalized/synthetic/train.parquet")
    broken = table.row(0, named=True)
    (videos / broken["source"] / broken["video_path"]).write_bytes(
        b"\x00\x00\x00\x18ftypmp42 not a video at all"
    )
    result = train_sft(sft_config(root, init, tmp_path / "run", data=data(root, videos), steps=6, workers=2))
    lost = table.filter(pl.col("video_path") == broken["video_path"])["uid"].to_list()
    assert sum(h["skipped"] for h in result["history"]) >= len(lost)
    recorded = [json.loads(line) for line in (tmp_path / "run/skipped.jsonl").read_text().splitlines()]
    assert {r["uid"] for r in recorded} == set(lost) and all(
        broken["video_path"] in r["error"] for r in recorded
    )
    assert all(h["loss"] == h["loss"] for h in result["history"])  # every step trained


def test_training_reads_the_clips_difficulty_scoring_decoded(root, init, tmp_path):
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.stages.difficulty import DifficultyConfig, score_difficulty
    from vtg_data.train.grpo import GRPOConfig, train_grpo

    cache = tmp_path / "frames"
    table = root / "normalized/synthetic/train.parquet"
    scorer = HFBackend(init, frame_cache=FrameCache(cache))
    score_difficulty(DifficultyConfig(data=(table,), out=tmp_path / "scores", k=2, max_tokens=8, prompt="compact",
                                      policy=POLICY, shards=1), backend=scorer)  # fmt: skip
    assert scorer.frame_cache.misses > 0
    result = train_grpo(GRPOConfig(model=str(init), data=data(root), out=tmp_path / "rl", prompt="compact",
                                   policy=POLICY, steps=3, prompts_per_step=2, k=2, max_tokens=8, save_every=0,
                                   save_final=False, frame_cache=cache, workers=2))  # fmt: skip
    history = result["history"]
    assert sum(h["frames_decoded"] for h in history) == 0 and sum(h["frames_cached"] for h in history) == 6


def test_the_frame_cache_is_bounded_and_evicts_the_least_recently_used(root, tmp_path):
    from vtg_data.video import sample_frames

    videos = sorted((root / "videos/synthetic").glob("*.mp4"))[:3]
    clips = [sample_frames(v, POLICY) for v in videos]
    probe = FrameCache(tmp_path / "probe")
    probe.put(videos[0], POLICY, clips[0])
    one = next((tmp_path / "probe").glob("*/*.npz")).stat().st_size
    cache = FrameCache(tmp_path / "cache", max_bytes=int(2.5 * one))
    cache.put(videos[0], POLICY, clips[0])
    cache.put(videos[1], POLICY, clips[1])
    time.sleep(0.01)
    assert cache.get(videos[0], POLICY, clips[0].backend) is not None  # used again: now the newest
    time.sleep(0.01)
    cache.put(videos[2], POLICY, clips[2])  # past the bound: the least recently used (1) goes
    assert cache.get(videos[1], POLICY, clips[1].backend) is None
    assert cache.get(videos[0], POLICY, clips[0].backend) is not None
    assert cache.get(videos[2], POLICY, clips[2].backend) is not None
    assert sum(p.stat().st_size for p in (tmp_path / "cache").glob("*/*.npz")) <= 2.5 * one
    assert (cache.hits, cache.misses) == (3, 1)


def test_rollouts_per_prompt_length_equal_the_padded_batch(root, init):
    from vtg_data.lvlm import GenerationParams
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.data import VideoInputs, load_examples
    from vtg_data.train.rollouts import PolicyRollouts

    backend = HFBackend(init)
    inputs = VideoInputs(backend, POLICY)
    examples = list(load_examples(data(root).path, video_root=root / "videos", prompt="compact", limit=4))
    prompts = [inputs.prompt(e) for e in examples]
    assert len({p["input_ids"].shape[1] for p in prompts}) > 1  # lengths differ: the padded path pads
    batch = [(inputs.request(e), None) for e in examples]
    params = GenerationParams(n=2, temperature=0.0, max_tokens=6)
    padded = PolicyRollouts(backend, "padded").sample(batch, params, prompts)
    grouped = PolicyRollouts(backend, "equal-length").sample(batch, params, prompts)
    assert len(grouped) == len(padded) == 2 * len(examples)
    assert [r.tolist() for r in grouped] == [r.tolist() for r in padded]  # same rows, in prompt order


def test_a_run_says_where_it_is_when_no_bar_is_drawn(root, init, tmp_path):
    from typer.testing import CliRunner

    from vtg_data.cli import app

    result = CliRunner().invoke(app, [
        "train", "sft", "--model", str(init), "--data", data(root).path, "--video-root", str(root / "videos"),
        "--out", str(tmp_path / "run"), "--steps", "40", "--batch-size", "2", "--num-workers", "0", "--prompt", "compact",
        "--max-frames", "8", "--min-pixels", str(56 * 56), "--max-pixels", str(56 * 56), "--no-save-final",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("train sft step ")]
    assert len(lines) == 20 and lines[-1].startswith("train sft step 40/40, loss ") and "s left)" in lines[-1]
