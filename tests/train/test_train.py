"""The trainers learn, resume exactly, and see the video the way evaluation shows it."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest
from events import event_corpus

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
# Real training runs: about 2 min for the shared SFT fixture on 2 idle cores; room for a busy machine.
pytestmark = pytest.mark.timeout(1500)

from vtg_data.grounding.baselines import mean_relative_window  # noqa: E402
from vtg_data.video import SamplingPolicy  # noqa: E402

POLICY = SamplingPolicy(fps=2.0, min_frames=4, max_frames=64, min_pixels=56 * 56, max_pixels=56 * 56)


@pytest.fixture(scope="session")
def event_root(tmp_path_factory):
    """200 single-event videos (150 train, 50 held out), 112x112 at 10 fps, 8-20 s."""
    return event_corpus(
        tmp_path_factory.mktemp("events"), n_videos=200, seed=0, min_duration=8, max_duration=20
    )


def data(root, split):
    from vtg_data.train.options import TrainData

    return TrainData(str(root / f"normalized/synthetic/{split}.parquet"), root / "videos")


@pytest.fixture(scope="session")
def sft_run(event_root, tmp_path_factory):
    from vtg_data.lvlm.tiny import make_tiny_model
    from vtg_data.train.sft import SFTConfig, train_sft

    torch.set_num_threads(2)
    base = tmp_path_factory.mktemp("sft")
    model = make_tiny_model(base / "init", size="s", seed=0)
    cfg = SFTConfig(model=str(model), data=data(event_root, "train"), eval_data=data(event_root, "test"), out=base / "run",
                    prompt="compact", policy=POLICY, steps=600, eval_every=600, save_every=100)  # fmt: skip
    return model, train_sft(cfg), base / "run"


def test_sft_brings_a_tiny_model_from_zero_to_real_grounding(sft_run, event_root):
    import polars as pl

    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.common import evaluate_examples
    from vtg_data.train.data import VideoInputs, load_examples

    init, result, _ = sft_run
    held_out = load_examples(
        data(event_root, "test").path, video_root=event_root / "videos", prompt="compact"
    )
    backend = HFBackend(init)
    before = evaluate_examples(backend, VideoInputs(backend, POLICY), held_out)
    assert before["mIoU"] <= 0.05
    train = pl.read_parquet(event_root / "normalized/synthetic/train.parquet")
    s, e = mean_relative_window(train)
    baseline = statistics.fmean(
        max(0.0, min(e * x.duration, x.windows[0][1]) - max(s * x.duration, x.windows[0][0]))
        / (max(e * x.duration, x.windows[0][1]) - min(s * x.duration, x.windows[0][0]))
        for x in held_out
    )
    after = result["eval"]
    assert after["mIoU"] >= 0.60 and after["mIoU"] > baseline + 0.15, (after, baseline)
    assert after["well_formed"] >= 0.9
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < losses[0] / 5


def test_grpo_raises_the_training_reward(sft_run, event_root, tmp_path):
    from vtg_data.train.grpo import GRPOConfig, train_grpo

    _, _, run = sft_run
    start = run / "checkpoints/step-000200"
    cfg = GRPOConfig(model=str(start), data=data(event_root, "train"), out=tmp_path / "rl", prompt="compact",
                     reward="tvg_r1_nothink", policy=POLICY, steps=80, max_tokens=26, lr=2e-4, save_every=0)  # fmt: skip
    history = train_grpo(cfg)["history"]
    first = statistics.fmean(h["reward"] for h in history[:10])
    last = statistics.fmean(h["reward"] for h in history[-10:])
    assert last - first >= 0.03, (first, last)
    assert statistics.fmean(h["frac_reward_zero_std"] for h in history) < 0.5
    assert {"reward/iou", "reward/format", "completion_length", "entropy", "kl"} <= set(history[0])


def test_checkpoints_are_evaluable_with_vtg_data_eval(sft_run, event_root, tmp_path):
    from typer.testing import CliRunner

    from vtg_data.cli import app

    _, result, _ = sft_run
    out = tmp_path / "eval"
    run = CliRunner().invoke(app, ["eval", "--model", result["final_checkpoint"], "--data", str(event_root / "normalized/synthetic/test.parquet"),
                                   "--out", str(out), "--prompt", "compact", "--fps", "2", "--min-pixels", str(56 * 56),
                                   "--max-pixels", str(56 * 56), "--max-tokens", "32", "--limit", "10", "--bootstrap", "0"])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert json.loads((out / "metrics.json").read_text())["metrics"]["mIoU"] > 30


def test_training_sees_the_video_timing_evaluation_gives(sft_run, event_root):
    from vtg_data.lvlm.base import Request
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.data import VideoInputs, load_examples
    from vtg_data.video import sample_frames

    init, _, _ = sft_run
    backend = HFBackend(init)
    example = load_examples(
        data(event_root, "test").path, video_root=event_root / "videos", prompt="compact", limit=1
    )[0]
    train_side = VideoInputs(backend, POLICY).sft_example(example)
    clip = sample_frames(example.video, SamplingPolicy(**{**POLICY.__dict__, "patch": backend.patch}))
    eval_side = backend.prepare([(Request(example.uid, example.messages, example.video, POLICY), clip)])
    assert torch.equal(train_side["second_per_grid_ts"], eval_side["second_per_grid_ts"].cpu())
    assert torch.equal(train_side["video_grid_thw"], eval_side["video_grid_thw"].cpu())
    prompt_len = eval_side["input_ids"].shape[1]
    assert torch.equal(train_side["input_ids"][:prompt_len], eval_side["input_ids"][0].cpu())
    assert float(train_side["second_per_grid_ts"][0]) == pytest.approx(2 / clip.fps, rel=1e-5)


def test_known_traps(sft_run, event_root):
    from vtg_data.lvlm import GenerationParams
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.data import VideoInputs, load_examples

    init, result, _ = sft_run
    backend = HFBackend(init)
    inputs = VideoInputs(backend, POLICY)
    examples = load_examples(
        data(event_root, "test").path, video_root=event_root / "videos", prompt="compact", limit=3
    )
    batch = [(inputs.request(e), inputs.clip(e.video)) for e in examples]
    # 1. an untrained model sampling hot never emits vision placeholders (they would break the next forward)
    ids, _ = backend.generate_ids(batch, GenerationParams(n=8, temperature=2.0, max_tokens=40))
    tokenizer = backend.processor.tokenizer
    forbidden = set(tokenizer.all_special_ids) - {tokenizer.eos_token_id, tokenizer.pad_token_id}
    assert not forbidden & set(ids.flatten().tolist())
    # 2. cached rope deltas do not leak: B after A equals B alone
    trained = HFBackend(result["final_checkpoint"])
    trained_inputs = VideoInputs(trained, POLICY)
    a, b = [[(trained_inputs.request(e), trained_inputs.clip(e.video))] for e in examples[:2]]
    alone = trained.sample(b, GenerationParams(max_tokens=20))[0]
    trained.sample(a, GenerationParams(max_tokens=20))
    assert trained.sample(b, GenerationParams(max_tokens=20))[0] == alone
    # 3. answer positions under teacher forcing equal those under generate: forcing the answer
    #    tokens through generate gives the same logits as one teacher-forced forward
    example = examples[0]
    features = trained_inputs.sft_example(example)
    prompt = trained_inputs.prompt(example)
    answer = features["input_ids"][prompt["input_ids"].shape[1] :].tolist()
    model = trained.model
    with torch.inference_mode():
        model.model.rope_deltas = None
        forced = {
            k: (v.unsqueeze(0) if k in ("input_ids", "mm_token_type_ids") else v)
            for k, v in features.items()
            if k != "labels"
        }
        full = model(**forced).logits[0]
        model.model.rope_deltas = None
        length = prompt["input_ids"].shape[1]
        generated = model.generate(
            **prompt, max_new_tokens=len(answer), do_sample=False, output_logits=True, return_dict_in_generate=True,
            prefix_allowed_tokens_fn=lambda _, ids: [answer[ids.shape[-1] - length]],
            pad_token_id=trained.processor.tokenizer.pad_token_id,
        )  # fmt: skip
    steps = torch.stack([logits[0] for logits in generated.logits])
    assert generated.sequences[0, length:].tolist() == answer
    assert torch.allclose(steps, full[length - 1 : length - 1 + len(answer)], atol=1e-4)


def test_a_sharded_model_generates_in_lockstep(sft_run, event_root, tmp_path):
    """Under FSDP every forward pass is a collective. When one process's answers end before the
    other's, it must keep stepping with the others (or both hang). Held-out greedy eval of the
    trained model, shared over two sharded processes, gives the one-process result."""
    import polars as pl
    from launchers import launch

    from vtg_data.lvlm import GenerationParams
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.common import evaluate_examples
    from vtg_data.train.data import VideoInputs, load_examples

    _, result, _ = sft_run
    checkpoint = result["final_checkpoint"]
    table = pl.read_parquet(event_root / "normalized/synthetic/test.parquet").head(16)
    table.write_parquet(tmp_path / "pool.parquet")
    backend = HFBackend(checkpoint)
    inputs = VideoInputs(backend, POLICY)
    pool = load_examples(str(tmp_path / "pool.parquet"), video_root=event_root / "videos", prompt="compact")
    ids, _ = backend.generate_ids([(inputs.request(e), inputs.clip(e.video)) for e in pool],
                                  GenerationParams(max_tokens=32))  # fmt: skip
    eos = backend.processor.tokenizer.eos_token_id
    lengths = [int((row == eos).nonzero()[0]) + 1 for row in ids]
    short = [i for i, n in enumerate(lengths) if n == min(lengths)][:2]
    long = [i for i, n in enumerate(lengths) if n == max(lengths)][:2]
    assert len(short) == len(long) == 2 and min(lengths) < max(lengths)
    # shares are taken in turn: process 0 gets the two short answers, process 1 the two long ones
    held = tmp_path / "held.parquet"
    table[[short[0], long[0], short[1], long[1]]].write_parquet(held)
    examples = load_examples(str(held), video_root=event_root / "videos", prompt="compact")
    reference = evaluate_examples(backend, inputs, examples)

    args = ["train", "rl", "--data", str(held), "--video-root", str(event_root / "videos"), "--prompt", "compact",
            "--min-pixels", str(56 * 56), "--max-pixels", str(56 * 56), "--model", checkpoint, "--steps", "1",
            "--prompts-per-step", "2", "-k", "4", "--max-tokens", "32", "--lr", "1e-12", "--save-every", "0",
            "--reward", "tvg_r1_nothink", "--eval-data", str(held), "--eval-every", "1"]  # fmt: skip
    (step,) = launch(args, tmp_path / "rl", 2, config="fsdp")
    assert step["eval/mIoU"] == pytest.approx(reference["mIoU"], abs=1e-6)
    assert step["eval/well_formed"] == pytest.approx(reference["well_formed"], abs=1e-6)
    assert step["reward"] > 0.2  # the trained model's rollouts, scored (an untrained one scores 0)


def test_kill_and_resume_continues_with_the_same_data_order(event_root, tmp_path):
    from vtg_data.lvlm.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "init", size="xs", seed=1)
    args = ["train", "sft", "--model", str(model), "--data", str(event_root / "normalized/synthetic/train.parquet"),
            "--video-root", str(event_root / "videos"), "--prompt", "compact", "--steps", "40", "--batch-size", "4",
            "--save-every", "5", "--min-pixels", str(56 * 56), "--max-pixels", str(56 * 56), "--limit", "24"]  # fmt: skip
    from typer.testing import CliRunner

    from vtg_data.cli import app

    whole = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    run = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "vtg_data.cli", *args, "--out", str(run)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (run / "checkpoints/step-000010").is_dir():
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed = CliRunner().invoke(app, [*args, "--out", str(run), "--resume"])
    assert resumed.exit_code == 0, resumed.output

    def log(folder):
        records = {}
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            records[record["step"]] = record  # after a resume the later record of a step wins
        return records

    reference, continued = log(tmp_path / "whole"), log(run)
    assert sorted(continued) == list(range(1, 41))
    for step in range(11, 41):
        assert continued[step]["batch"] == reference[step]["batch"]
        assert continued[step]["loss"] == pytest.approx(reference[step]["loss"], rel=1e-4, abs=1e-5)
