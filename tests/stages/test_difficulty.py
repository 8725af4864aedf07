"""`vtg-data score-difficulty`: statistics, failures, kill-and-resume, and the Ray engine."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from vtg_data.lvlm.scripted import ScriptedBackend
from vtg_data.stages.difficulty import DifficultyConfig, read_scores, score_difficulty
from vtg_data.video import SamplingPolicy

POLICY = SamplingPolicy(fps=1.0, max_frames=8, min_pixels=784, max_pixels=3136)


def cfg(synthetic_root, out, **changes):
    base = {"data": (synthetic_root / "normalized/synthetic/train.parquet",), "out": out, "k": 4, "max_tokens": 24,
            "policy": POLICY, "shards": 3}  # fmt: skip
    return DifficultyConfig(**(base | changes))


def test_statistics_from_known_rollouts(synthetic_root, tmp_path):
    def policy(request, params):
        # rollout 0 exact, 1 half overlap, 2 unparseable, 3 disjoint: IoUs 1, 1/3, 0, 0
        return [
            "<think>x</think> <time>[GT]</time>",
            "<think>x</think> <time>[HALF]</time>",
            "no answer",
            "<think>x</think> <time>[FAR]</time>",
        ]

    import polars as pl

    rows = {
        r["uid"]: r for r in pl.read_parquet(synthetic_root / "normalized/synthetic/train.parquet").to_dicts()
    }

    def concrete(request, params):
        s, e = rows[request.uid]["windows"][0]
        half = (e - s) / 2
        texts = policy(request, params)
        return [
            t.replace("GT", f"{s}, {e}")
            .replace("HALF", f"{s + half}, {e + half}")
            .replace("FAR", f"{e + 1}, {e + 2}")
            for t in texts
        ]

    manifest = score_difficulty(
        cfg(synthetic_root, tmp_path / "s"), backend=ScriptedBackend(concrete, "known")
    )
    table = read_scores(tmp_path / "s").to_pylist()
    assert manifest["counts"]["scored"] == len(rows) and manifest["counts"]["parse_failures"] == len(rows)
    one = table[0]
    assert (
        one["ious"][0] == pytest.approx(1.0)
        and one["ious"][1] == pytest.approx(1 / 3)
        and one["ious"][2:] == [0.0, 0.0]
    )
    assert one["mean_iou"] == pytest.approx((1 + 1 / 3) / 4) and one["difficulty"] == pytest.approx(
        1 - one["mean_iou"]
    )
    assert one["pass@0.3"] == 0.5 and one["pass@0.5"] == 0.25 and one["parse_failure_rate"] == 0.25
    assert one["rewards"][0] == pytest.approx(0.1 + 0.9)  # tvg_r1 preset: format + IoU
    assert len({r["run_id"] for r in table}) == 1 and one["run_id"] == manifest["run_id"]


def test_failed_requests_are_not_scored_and_are_retried(synthetic_root, tmp_path):
    broken = {"on": True}

    def flaky(request, params):
        if broken["on"] and request.uid.endswith("/0"):
            raise TimeoutError("upstream timed out")
        return ["<think>a</think> <time>[0, 1]</time>"] * params.n

    backend = ScriptedBackend(flaky, "flaky")
    first = score_difficulty(cfg(synthetic_root, tmp_path / "s"), backend=backend)
    failed = first["counts"]["failed"]
    assert failed > 0 and first["counts"]["scored"] + failed == first["counts"]["samples"]
    rows = read_scores(tmp_path / "s").to_pylist()
    assert all(r["mean_iou"] is None for r in rows if r["status"] == "failed")
    calls = backend.calls
    broken["on"] = False
    second = score_difficulty(cfg(synthetic_root, tmp_path / "s"), backend=backend)
    assert (
        second["counts"]["failed"] == 0 and backend.calls - calls == failed
    )  # only the failed were asked again


def test_kill_then_resume_repeats_no_rollout_and_matches_an_uninterrupted_run(
    synthetic_root, tiny_model, tmp_path
):
    args = ["score-difficulty", "--data", str(synthetic_root / "normalized/synthetic/train.parquet"), "--model", str(tiny_model),
            "-k", "4", "--max-tokens", "24", "--fps", "1", "--max-frames", "8", "--min-pixels", "784", "--max-pixels", "3136",
            "--shards", "3", "--batch-size", "1"]  # fmt: skip
    from typer.testing import CliRunner

    from vtg_data.cli import app

    whole = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    run_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "vtg_data.cli", *args, "--out", str(run_dir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    calls = run_dir / "calls"

    def answered():
        return sum(len(p.read_text().splitlines()) for p in calls.glob("*.jsonl")) if calls.is_dir() else 0

    while time.monotonic() < deadline and answered() < 4:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    asked_before = {
        json.loads(line)["uid"]
        for p in calls.glob("*.jsonl")
        for line in p.read_text().splitlines()
        if line.endswith("}")
    }
    assert asked_before

    from vtg_data.lvlm.hf import HFBackend

    asked = []

    class Counting(HFBackend):
        def generate(self, requests, params, on_response=None):
            asked.extend(r.uid for r in requests)
            return super().generate(requests, params, on_response)

    config = cfg(
        synthetic_root,
        run_dir,
        max_tokens=24,
        policy=SamplingPolicy(fps=1.0, max_frames=8, min_pixels=784, max_pixels=3136),
    )
    score_difficulty(config, backend=Counting(tiny_model, batch_size=1))
    assert asked and not set(asked) & asked_before
    for k in range(3):
        name = f"scores/shard-{k:05d}-of-00003.parquet"
        assert pq.read_table(run_dir / name).equals(pq.read_table(tmp_path / "whole" / name)), name


@pytest.mark.slow
def test_ray_engine_gives_the_same_table_as_the_local_engine(synthetic_root, tiny_model, tmp_path):
    pytest.importorskip("ray")
    import functools

    import ray

    from vtg_data.lvlm import make_backend
    from vtg_data.stages.difficulty_ray import score_with_ray

    factory = functools.partial(make_backend, "hf", str(tiny_model), batch_size=1)
    local = score_difficulty(cfg(synthetic_root, tmp_path / "local", limit=6, shards=2), backend=factory())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = score_difficulty(
            cfg(synthetic_root, tmp_path / "ray", limit=6, shards=2, engine="ray", workers=2),
            backend_factory=factory,
            executor=score_with_ray,
        )
    finally:
        ray.shutdown()
    assert (
        remote["run_id"] == local["run_id"] and remote["counts"]["scored"] == local["counts"]["scored"] == 6
    )
    assert read_scores(tmp_path / "ray").equals(read_scores(tmp_path / "local"))
