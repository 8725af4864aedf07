"""Training variants: LoRA adapters (train, checkpoint, evaluate, resume) and the Qwen3-VL family."""

import json
import shutil
from pathlib import Path

import pytest
from events import event_corpus

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(900)

from launchers import launch  # noqa: E402

from vtg_data.video import SamplingPolicy  # noqa: E402

POLICY = SamplingPolicy(fps=2.0, min_frames=4, max_frames=32, min_pixels=56 * 56, max_pixels=56 * 56)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return event_corpus(
        tmp_path_factory.mktemp("variants"), n_videos=24, seed=3, min_duration=8, max_duration=12
    )


def data(root, split="train", limit=None):
    from vtg_data.train.options import TrainData

    return TrainData(str(root / f"normalized/synthetic/{split}.parquet"), root / "videos", limit=limit)


def test_lora_trains_only_adapters_and_checkpoints_are_evaluable_and_resumable(root, tmp_path, xs_model):
    pytest.importorskip("peft")
    from vtg_data.lvlm.hf import HFBackend, is_adapter_folder
    from vtg_data.train.common import evaluate_examples
    from vtg_data.train.data import VideoInputs, load_examples
    from vtg_data.train.sft import SFTConfig, train_sft

    init = xs_model
    cfg = SFTConfig(model=str(init), data=data(root), out=tmp_path / "lora", prompt="compact", policy=POLICY, steps=12,
                    batch_size=4, lr=5e-3, warmup=0, lora_rank=4, save_every=6, stop_after=6)  # fmt: skip
    train_sft(cfg)
    checkpoint = tmp_path / "lora/checkpoints/step-000006"
    assert is_adapter_folder(checkpoint)
    adapter_bytes = sum(p.stat().st_size for p in checkpoint.glob("adapter_model.*"))
    full_bytes = sum(p.stat().st_size for p in init.glob("*.safetensors"))
    assert 0 < adapter_bytes < full_bytes / 4

    result = train_sft(SFTConfig(**{**cfg.__dict__, "stop_after": None, "resume": True}))
    steps = [json.loads(line)["step"] for line in (tmp_path / "lora/metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # resumed at 7, not restarted
    final = result["final_checkpoint"]

    whole = train_sft(SFTConfig(**{**cfg.__dict__, "stop_after": None, "out": tmp_path / "whole"}))
    for resumed_step, whole_step in zip(result["history"], whole["history"][6:], strict=True):
        assert resumed_step["batch"] == whole_step["batch"]
        assert resumed_step["loss"] == pytest.approx(whole_step["loss"], rel=1e-4, abs=1e-5)

    # Only the adapters train: the resumed model's trainable parameters are LoRA's, and nonzero.
    resumed = HFBackend(final, trainable_adapter=True).model
    trainable = {n: p for n, p in resumed.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert any(float(p.detach().abs().sum()) > 0 for n, p in trainable.items() if "lora_B" in n)

    merged = HFBackend(final)  # the path `vtg-data eval --model CHECKPOINT` takes
    assert not hasattr(merged.model, "peft_config")
    held_out = load_examples(data(root, "test").path, video_root=root / "videos", prompt="compact", limit=4)
    scores = evaluate_examples(merged, VideoInputs(merged, POLICY), held_out)
    assert set(scores) == {"mIoU", "R1@0.5", "well_formed"}
    probe = VideoInputs(merged, POLICY).sft_example(held_out[0])
    batch = {
        k: v.unsqueeze(0) if k in ("input_ids", "labels", "attention_mask") else v for k, v in probe.items()
    }
    batch.pop("mm_token_type_ids", None)
    with torch.no_grad():
        trained_loss = float(merged.model(**batch).loss)
        base_loss = float(HFBackend(init).model(**batch).loss)
    assert trained_loss < base_loss


def test_lora_without_peft_fails_with_an_instruction(root, tmp_path, monkeypatch, xs_model):
    import sys

    from vtg_data.train.sft import SFTConfig, train_sft

    monkeypatch.setitem(sys.modules, "peft", None)
    init = xs_model
    cfg = SFTConfig(model=str(init), data=data(root, limit=4), out=tmp_path / "run", prompt="compact", policy=POLICY,
                    steps=1, batch_size=2, lora_rank=4)  # fmt: skip
    with pytest.raises(ImportError, match="peft"):
        train_sft(cfg)


def test_qwen3_vl_family_trains_with_sft_and_grpo(root, tmp_path):
    from vtg_data.lvlm.tiny import make_tiny_model
    from vtg_data.train.grpo import GRPOConfig, train_grpo
    from vtg_data.train.sft import SFTConfig, train_sft

    torch.set_num_threads(2)
    init = make_tiny_model(tmp_path / "init", size="xs", seed=0, family="qwen3-vl")
    sft = train_sft(SFTConfig(model=str(init), data=data(root), out=tmp_path / "sft", prompt="compact", policy=POLICY,
                              steps=40, batch_size=8, lr=3e-3, warmup=5, save_every=0))  # fmt: skip
    losses = [h["loss"] for h in sft["history"]]
    assert sum(losses[-5:]) < sum(losses[:5]) / 2, losses
    rl = train_grpo(GRPOConfig(model=sft["final_checkpoint"], data=data(root), out=tmp_path / "rl", prompt="compact",
                               reward="tvg_r1_nothink", policy=POLICY, steps=2, prompts_per_step=2, k=4, max_tokens=20,
                               save_every=0))  # fmt: skip
    assert len(rl["history"]) == 2
    assert all(0.0 <= h["reward"] <= 2.0 and h["completion_length"] > 0 for h in rl["history"])


def final_weights(result) -> dict[str, torch.Tensor]:
    from vtg_data.lvlm.hf import load_model

    return {n: p.detach() for n, p in load_model(result["final_checkpoint"]).named_parameters()}


def same_update(init, a, b) -> float:
    """Cosine similarity of two updates from the same start. Adam's first step is about
    lr * sign(gradient), so a gradient entry within rounding of zero may flip: compare directions."""
    da = torch.cat([(a[n] - init[n]).flatten() for n in init])
    db = torch.cat([(b[n] - init[n]).flatten() for n in init])
    return float(torch.nn.functional.cosine_similarity(da, db, dim=0))


def test_micro_batches_accumulate_to_the_same_update(root, tmp_path, xs_model):
    """Splitting a step's batch into micro-batches changes memory, not the update."""
    from vtg_data.train.grpo import GRPOConfig, train_grpo
    from vtg_data.train.sft import SFTConfig, train_sft

    init = xs_model
    sft = {mb: train_sft(SFTConfig(model=str(init), data=data(root), out=tmp_path / f"sft{mb}", prompt="compact", policy=POLICY,
                                   steps=1, batch_size=6, lr=1e-2, warmup=0, save_every=0, micro_batch=mb))
           for mb in (0, 4)}  # fmt: skip
    assert sft[0]["history"][0]["loss"] == pytest.approx(sft[4]["history"][0]["loss"], rel=1e-5)
    start = final_weights({"final_checkpoint": init})
    assert same_update(start, final_weights(sft[0]), final_weights(sft[4])) > 0.999

    rl = {mb: train_grpo(GRPOConfig(model=str(init), data=data(root), out=tmp_path / f"rl{mb}", prompt="compact",
                                    reward="tvg_r1_nothink", policy=POLICY, steps=1, prompts_per_step=2, k=4,
                                    max_tokens=12, lr=1e-2, entropy=1e-3, beta=0.1, save_every=0, micro_batch=mb))
          for mb in (0, 3)}  # fmt: skip
    for key in ("reward", "loss", "entropy", "completion_tokens"):
        assert rl[0]["history"][0][key] == pytest.approx(rl[3]["history"][0][key], rel=1e-5, abs=1e-7), key
    assert same_update(start, final_weights(rl[0]), final_weights(rl[3])) > 0.999


def test_completion_log_probs_skip_prompt_logits_without_changing_them(root, xs_model):
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.data import VideoInputs, load_examples
    from vtg_data.train.grpo import _sequence_batch, _token_logps

    backend = HFBackend(xs_model)
    inputs = VideoInputs(backend, POLICY)
    examples = load_examples(data(root).path, video_root=root / "videos", prompt="compact", limit=2)
    completions = [
        torch.tensor([11, 12, 13, backend.processor.tokenizer.eos_token_id]),
        torch.tensor([21, 22]),
    ]
    batch, mask = _sequence_batch(
        [inputs.prompt(e) for e in examples], completions, backend.processor.tokenizer.pad_token_id
    )
    with torch.no_grad():
        logps, _, m = _token_logps(backend.model, batch, mask)
        backend.model.model.rope_deltas = None
        full = torch.log_softmax(backend.model(**batch).logits[:, :-1].float(), -1)
    expected = full.gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
    assert int(m.sum()) == 6 and m.shape[1] < mask.shape[1] // 2
    assert torch.allclose(logps[m], expected[mask[:, 1:]], atol=1e-5)
    # at a sampling temperature, with special tokens never sampled: the distribution the rollouts
    # were drawn from (logits / T, the suppressed tokens excluded)
    suppressed = tuple(backend.suppress_tokens)
    with torch.no_grad():
        logps, entropy, m = _token_logps(backend.model, batch, mask, temperature=0.6, suppressed=suppressed)
        backend.model.model.rope_deltas = None
        scaled = backend.model(**batch).logits[:, :-1].float() / 0.6
    scaled[..., list(suppressed)] = float("-inf")
    tempered = torch.log_softmax(scaled, -1).gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logps[m], tempered[mask[:, 1:]], atol=1e-5)
    assert torch.isfinite(logps).all() and torch.isfinite(entropy).all()


def test_one_update_per_step_takes_its_old_log_probs_from_the_update_itself(root, tmp_path, xs_model):
    """With one update per step the sampling policy is the updated one: the update's own log-probs
    (train mode, detached) equal a separate no-grad pass (eval mode), so the gradient is the same
    without that pass. Several updates per step keep the separate pass and move the ratio."""
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.data import VideoInputs, load_examples
    from vtg_data.train.grpo import GRPOConfig, _sequence_batch, _token_logps, clipped_objective, train_grpo

    init = xs_model
    backend = HFBackend(init)
    inputs = VideoInputs(backend, POLICY)
    examples = load_examples(data(root).path, video_root=root / "videos", prompt="compact", limit=2)
    eos = backend.processor.tokenizer.eos_token_id
    completions = [torch.tensor([11, 12, 13, eos]), torch.tensor([21, 22, eos])]
    batch, mask = _sequence_batch(
        [inputs.prompt(e) for e in examples], completions, backend.processor.tokenizer.pad_token_id
    )
    advantages = torch.tensor([[1.0], [-1.0]])
    model = backend.model
    gradients = []
    for separate in (True, False):
        model.eval()
        with torch.no_grad():
            old = _token_logps(model, batch, mask)[0]
        model.train()
        model.zero_grad()
        logps, _, m = _token_logps(model, batch, mask)
        assert torch.allclose(old, logps.detach(), atol=1e-6)
        reference = old if separate else logps.detach()
        (-(clipped_objective(logps, reference, advantages, 0.2) * m).sum()).backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(gradients[0], gradients[1], atol=1e-6)

    cfg = GRPOConfig(model=str(init), data=data(root), out=tmp_path / "rl", prompt="compact", reward="tvg_r1_nothink",
                     policy=POLICY, steps=1, prompts_per_step=2, k=4, max_tokens=10, lr=5e-2, entropy=0.05,
                     updates_per_step=3, save_every=0)  # fmt: skip
    (record,) = train_grpo(cfg)["history"]
    assert record["loss"] == record["loss"] and record["update_seconds"] > 0


def common_args(root) -> list[str]:
    return ["--data", str(root / "normalized/synthetic/train.parquet"), "--video-root", str(root / "videos"),
            "--prompt", "compact", "--min-pixels", str(56 * 56), "--max-pixels", str(56 * 56), "--max-frames", "32",
            "--limit", "8"]  # fmt: skip


def test_two_processes_take_the_step_one_process_takes(root, tmp_path, xs_model):
    """``torchrun`` (CPU, gloo) with two processes: each trains on half of every global batch, the
    loss is the mean over all processes' answer tokens (so the losses equal one process's), and the
    metrics and checkpoints are written once."""

    init = xs_model
    sft = ["train", "sft", *common_args(root), "--model", str(init), "--steps", "3", "--batch-size", "4",
           "--save-every", "0", "--warmup", "0"]  # fmt: skip
    two = launch(sft, tmp_path / "two", 2)
    one = launch(sft, tmp_path / "one", 1)
    assert [r["step"] for r in two] == [1, 2, 3]  # one line per step, not one per process
    assert [r["batch"] for r in two] == [r["batch"] for r in one]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert json.loads((tmp_path / "two/config.json").read_text())["processes"] == 2
    final = tmp_path / "two/checkpoints/step-000003"
    rl = ["train", "rl", *common_args(root), "--model", str(final), "--steps", "2", "--prompts-per-step", "2", "-k", "2",
          "--max-tokens", "8", "--save-every", "0", "--reward", "tvg_r1_nothink"]  # fmt: skip
    grpo = launch(rl, tmp_path / "rl", 2, config="ddp")
    assert [r["step"] for r in grpo] == [1, 2] and (tmp_path / "rl/checkpoints/step-000002").is_dir()
    assert not json.loads((tmp_path / "rl/config.json").read_text())["sharded"]
    assert grpo[0]["completion_tokens"] == 2 * 2 * 8  # both processes' rollouts counted


def test_fsdp_shards_trains_like_one_process_and_resumes_on_any_process_count(root, tmp_path, xs_model):
    """The shipped FSDP config (FSDP2, gloo on CPU): sharded parameters, the same losses as one
    process, checkpoints gathered into ordinary model folders, and a resume from a sharded run's
    checkpoint (optimizer state included) on one process or two gives the uninterrupted run's losses."""
    from safetensors.torch import load_file

    init = xs_model
    sft = ["train", "sft", *common_args(root), "--model", str(init), "--steps", "4", "--batch-size", "4",
           "--save-every", "2", "--warmup", "0", "--eval-data", str(root / "normalized/synthetic/test.parquet"),
           "--eval-every", "2"]  # fmt: skip
    whole = launch(sft, tmp_path / "whole", 1)
    sharded = launch([*sft, "--stop-after", "2"], tmp_path / "sharded", 2, config="fsdp")
    config = json.loads((tmp_path / "sharded/config.json").read_text())
    assert config["sharded"] and config["processes"] == 2
    assert not json.loads((tmp_path / "whole/config.json").read_text())["sharded"]
    assert [r["loss"] for r in sharded] == pytest.approx([r["loss"] for r in whole[:2]], rel=1e-5)
    assert sharded[1]["eval/mIoU"] == pytest.approx(
        whole[1]["eval/mIoU"], abs=1e-6
    )  # eval shared out, same result

    checkpoint = tmp_path / "sharded/checkpoints/step-000002"
    gathered = load_file(checkpoint / "model.safetensors")
    reference = load_file(tmp_path / "whole/checkpoints/step-000002/model.safetensors")
    assert set(gathered) == set(reference)  # tied weights stored once, as one process stores them
    assert all(
        torch.allclose(gathered[k], reference[k], atol=1e-5) for k in reference
    )  # whole tensors, not shards

    for processes, config in ((1, None), (2, "fsdp")):
        out = tmp_path / f"resumed-{processes}"
        shutil.copytree(tmp_path / "sharded", out)
        resumed = launch([*sft, "--resume"], out, processes, config)
        assert [r["step"] for r in resumed] == [1, 2, 3, 4]  # steps 3 and 4 appended, not restarted
        assert [r["loss"] for r in resumed[2:]] == pytest.approx([r["loss"] for r in whole[2:]], rel=1e-5)

    rl = ["train", "rl", *common_args(root), "--model", str(checkpoint), "--steps", "2", "--prompts-per-step", "2",
          "-k", "2", "--max-tokens", "8", "--save-every", "0", "--reward", "tvg_r1_nothink"]  # fmt: skip
    # with a KL reference, sharded like the policy
    grpo = launch([*rl, "--beta", "0.1", "--entropy", "0.05"], tmp_path / "rl", 2, config="fsdp")
    assert [r["step"] for r in grpo] == [1, 2]
    assert (tmp_path / "rl/checkpoints/step-000002/model.safetensors").is_file()
    assert grpo[0]["kl"] == 0 and grpo[1]["kl"] > 0


def test_grpo_with_lora_and_a_kl_reference(root, tmp_path, xs_model):
    pytest.importorskip("peft")
    from vtg_data.lvlm.hf import is_adapter_folder
    from vtg_data.train.grpo import GRPOConfig, train_grpo

    init = xs_model
    result = train_grpo(GRPOConfig(model=str(init), data=data(root), out=tmp_path / "rl", prompt="compact",
                                   reward="tvg_r1_nothink", policy=POLICY, steps=2, prompts_per_step=2, k=4,
                                   max_tokens=12, lr=1e-2, beta=0.1, entropy=0.05, lora_rank=4, save_every=0))  # fmt: skip
    assert is_adapter_folder(result["final_checkpoint"])
    # untrained rewards tie (no advantage), so the entropy bonus is what moves the adapter at step 1
    assert result["history"][0]["kl"] == 0 and result["history"][-1]["kl"] > 0


def test_fsdp_with_lora_checkpoints_adapters_and_resumes_like_one_process(root, tmp_path, xs_model):
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    init = xs_model
    sft = ["train", "sft", *common_args(root), "--model", str(init), "--steps", "4", "--batch-size", "4",
           "--save-every", "2", "--warmup", "0", "--lr", "5e-3", "--lora-rank", "4"]  # fmt: skip
    whole = launch(sft, tmp_path / "whole", 1)
    launch([*sft, "--stop-after", "2"], tmp_path / "sharded", 2, config="fsdp")
    resumed = launch([*sft, "--resume"], tmp_path / "sharded", 2, config="fsdp")
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in whole], rel=1e-5)
    adapter = "checkpoints/step-000004/adapter_model.safetensors"
    sharded, single = load_file(tmp_path / "sharded" / adapter), load_file(tmp_path / "whole" / adapter)
    assert set(sharded) == set(single) and all(
        torch.allclose(sharded[k], single[k], atol=1e-6) for k in single
    )


def test_unsupported_distribution_is_refused_before_loading_anything():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from vtg_data.train.common import check_distribution

    deepspeed = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, num_processes=8)
    with pytest.raises(ValueError, match="DeepSpeed is not supported.*fsdp.yaml"):
        check_distribution(deepspeed, 16)
    three = SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, num_processes=3)
    with pytest.raises(ValueError, match="16 examples per step do not split over 3 processes"):
        check_distribution(three, 16)


def test_master_weights_are_float32_unless_asked_even_from_a_bfloat16_checkpoint(root, tmp_path, xs_model):
    from safetensors.torch import load_file

    from vtg_data.lvlm.hf import load_model
    from vtg_data.train.sft import SFTConfig, train_sft

    init = xs_model
    half = tmp_path / "bf16"
    load_model(init).to(torch.bfloat16).save_pretrained(half)
    for name in ("tokenizer.json", "tokenizer_config.json", "processor_config.json", "chat_template.jinja"):
        if (init / name).is_file():
            shutil.copy(init / name, half / name)
    assert {t.dtype for t in load_file(half / "model.safetensors").values()} == {torch.bfloat16}
    cfg = SFTConfig(model=str(half), data=data(root), out=tmp_path / "f32", prompt="compact", policy=POLICY, steps=1,
                    batch_size=2, warmup=0, save_every=0)  # fmt: skip
    trained = load_file(Path(train_sft(cfg)["final_checkpoint"]) / "model.safetensors")
    assert {t.dtype for t in trained.values()} == {torch.float32}
    cfg = SFTConfig(**{**cfg.__dict__, "out": tmp_path / "b16", "param_dtype": "bfloat16"})
    trained = load_file(Path(train_sft(cfg)["final_checkpoint"]) / "model.safetensors")
    assert {t.dtype for t in trained.values()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="param_dtype must be one of"):
        SFTConfig(**{**cfg.__dict__, "param_dtype": "float16"})


def test_a_resumed_grpo_run_keeps_its_starting_model_as_the_kl_reference(root, tmp_path, xs_model):
    """The KL reference is the policy the run started from, also after a resume (the checkpoint
    resumed from is a later policy): the resumed steps' KL equals the uninterrupted run's."""
    from vtg_data.train.grpo import GRPOConfig, train_grpo

    init = xs_model
    cfg = GRPOConfig(model=str(init), data=data(root), out=tmp_path / "whole", prompt="compact", reward="tvg_r1_nothink",
                     policy=POLICY, steps=4, prompts_per_step=2, k=4, max_tokens=10, lr=2e-2, beta=0.1, entropy=0.05,
                     save_every=2)  # fmt: skip
    whole = train_grpo(cfg)["history"]
    assert whole[2]["kl"] > 0
    train_grpo(GRPOConfig(**{**cfg.__dict__, "out": tmp_path / "resumed", "stop_after": 2}))
    resumed = train_grpo(GRPOConfig(**{**cfg.__dict__, "out": tmp_path / "resumed", "resume": True}))[
        "history"
    ]
    assert [r["step"] for r in resumed] == [3, 4]
    assert [r["kl"] for r in resumed] == pytest.approx([r["kl"] for r in whole[2:]], rel=1e-4, abs=1e-7)
