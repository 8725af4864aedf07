"""GRPO's rollout engines: the policy itself, and a vLLM engine in the same process (weights synced
every step, prompts checked against the trainer's). vLLM itself runs only where it is installed with
a GPU; elsewhere a stand-in answers the engine calls with a transformers copy of the model."""

import importlib.util
import json

import pytest
from events import event_corpus

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(900)

from vllm_standin import StandInEngine, sampling_params  # noqa: E402

from vtg_data.video import SamplingPolicy  # noqa: E402

POLICY = SamplingPolicy(fps=2.0, min_frames=4, max_frames=32, min_pixels=56 * 56, max_pixels=56 * 56)
HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return event_corpus(
        tmp_path_factory.mktemp("rollouts"), n_videos=12, seed=5, min_duration=8, max_duration=12
    )


@pytest.fixture(scope="module")
def init(xs_model):
    return xs_model


def config(root, init, out, **changes):
    from vtg_data.train.grpo import GRPOConfig
    from vtg_data.train.options import TrainData

    data = TrainData(str(root / "normalized/synthetic/train.parquet"), root / "videos")
    options = {"model": str(init), "data": data, "out": out, "prompt": "compact", "reward": "tvg_r1_nothink",
               "policy": POLICY, "steps": 3, "prompts_per_step": 2, "k": 4, "max_tokens": 12, "lr": 1e-2,
               "entropy": 0.05, "save_every": 1}  # fmt: skip
    return GRPOConfig(**{**options, **changes})


def engine_for(init, check_sync="first", sync_tolerance=1e-3, **options):
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.rollouts import VLLMRollouts

    backend = HFBackend(init)
    standin = StandInEngine(init, **options)
    # the engine never samples the special tokens the trainer's distribution excludes
    rollouts = VLLMRollouts(str(init), backend.processor, backend.suppress_tokens, llm=standin,
                            sampling=sampling_params, check_sync=check_sync, sync_tolerance=sync_tolerance)  # fmt: skip
    return rollouts, standin


def test_policy_rollouts_differ_although_the_checkpoint_says_top_k_1(root, init, tmp_path):
    """GRPO on a checkpoint carrying Qwen2.5-VL-7B-Instruct's generation config: the k rollouts of a
    prompt are k samples, not k copies of the greedy answer (which would leave no advantage)."""
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.grpo import train_grpo
    from vtg_data.train.rollouts import PolicyRollouts

    assert json.loads((init / "generation_config.json").read_text())["top_k"] == 1
    backend = HFBackend(init)
    drawn = []

    class Recording(PolicyRollouts):
        def sample(self, batch, params, prompts):
            rows = super().sample(batch, params, prompts)
            drawn.append(rows)
            return rows

    cfg = config(root, init, tmp_path / "rl", steps=1, k=8, temperature=1.0, max_tokens=8, save_every=0)
    (record,) = train_grpo(cfg, backend=backend, rollouts=Recording(backend, "padded"))["history"]
    (rows,) = drawn
    for prompt in range(2):
        assert len({tuple(row.tolist()) for row in rows[prompt * 8 : (prompt + 1) * 8]}) == 8
    assert record["loss"] == record["loss"]  # finite: no -inf log-probability reached the loss
    recorded = json.loads((tmp_path / "rl" / "config.json").read_text())
    assert recorded["checkpoint_generation_config_ignored"]["top_k"] == 1  # said, not used


def test_vllm_rollouts_sync_the_policy_every_step_and_train(root, init, tmp_path):
    from vtg_data.lvlm.hf import load_model
    from vtg_data.train.grpo import train_grpo

    engine, standin = engine_for(init)
    result = train_grpo(config(root, init, tmp_path / "rl"), rollouts=engine)
    assert [r["step"] for r in result["history"]] == [1, 2, 3]
    assert (
        standin.resets == 3 and len(standin.loaded) == 3
    )  # weights loaded and prefix cache dropped each step
    assert all(r["completion_tokens"] > 0 and "sync_seconds" in r for r in result["history"])
    # what the engine sampled step 3 with is the policy after step 2, not the starting model
    after_two = load_model(tmp_path / "rl/checkpoints/step-000002").state_dict()
    synced = standin.loaded[-1]
    assert set(synced) == set(after_two)
    assert all(torch.allclose(synced[name], after_two[name]) for name in after_two)
    initial = load_model(init).state_dict()
    assert any(not torch.equal(synced[name], initial[name]) for name in initial)
    # the first sync was checked: the engine's greedy answer scored by the trainer's model
    first = result["history"][0]
    assert first["sync_route"] == "reload_weights" and first["sync_check"]["tokens"] > 0
    assert first["sync_check"]["largest_logprob_difference"] < 1e-3
    assert all("sync_check" not in r for r in result["history"][1:])


def test_a_weight_sync_that_does_not_land_stops_the_run(root, init, tmp_path):
    """An engine that takes the weights and keeps its old ones: caught at the first changed policy."""
    from vtg_data.train.grpo import train_grpo
    from vtg_data.train.rollouts import SyncNotLanded

    engine, standin = engine_for(init, check_sync="every")
    standin.collective_rpc = lambda method, kwargs=None: [None]  # accepted, never applied
    with pytest.raises(
        SyncNotLanded, match=r"after weight sync 2 \(reload_weights\).*differs from the trainer"
    ):
        train_grpo(config(root, init, tmp_path / "rl", save_every=0), rollouts=engine)
    assert len(engine.sync_checks) == 2 and engine.sync_checks[0]["largest_logprob_difference"] < 1e-3


def test_lora_weights_reach_the_engine_merged_and_the_policy_is_untouched(init):
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    from vtg_data.lvlm.hf import load_model
    from vtg_data.train.rollouts import policy_weights

    policy = get_peft_model(
        load_model(init), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    for name, parameter in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)  # a trained adapter (B starts at zero)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    weights = policy_weights(policy)
    plain = load_model(init)
    assert set(weights) == set(plain.state_dict())  # a checkpoint's names: no lora_, no base_layer
    plain.load_state_dict(weights)
    ids = torch.tensor([[1, 5, 9, 12, 40, 7]])
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, policy(input_ids=ids).logits, atol=1e-5)
    assert all(torch.equal(p, before[n]) for n, p in policy.named_parameters())  # nothing merged in place


def test_the_end_of_turn_counts_whether_or_not_the_engine_reports_it(root, init):
    from vtg_data.lvlm import GenerationParams
    from vtg_data.lvlm.hf import HFBackend
    from vtg_data.train.data import VideoInputs, load_examples

    backend = HFBackend(init)
    inputs = VideoInputs(backend, POLICY)
    examples = load_examples(str(root / "normalized/synthetic/train.parquet"), video_root=root / "videos",
                             prompt="compact", limit=2)  # fmt: skip
    batch = [(inputs.request(e), inputs.clip(e.video)) for e in examples]
    prompts = [inputs.prompt(e) for e in examples]
    # hot among the 50 likeliest tokens: some rollouts end early
    params = GenerationParams(n=6, temperature=3.0, top_k=50, max_tokens=40, seed=1)
    rows = {}
    for report in (True, False):
        engine, _ = engine_for(init, report_eos=report)
        rows[report] = [r.tolist() for r in engine.sample(batch, params, prompts)]
    eos = backend.processor.tokenizer.eos_token_id
    assert rows[True] == rows[False]
    assert any(r[-1] == eos and len(r) < 40 for r in rows[True])  # an ended rollout keeps its end of turn


def test_an_engine_prompt_other_than_the_trainers_stops_the_run(root, init, tmp_path):
    from vtg_data.train.grpo import train_grpo

    engine, _ = engine_for(init, edit_prompt=lambda text: text.replace("assistant", "assistant:"))
    with pytest.raises(
        ValueError, match=r"synthetic/train/.*the vLLM engine built another prompt than the trainer"
    ):
        train_grpo(config(root, init, tmp_path / "rl", steps=1), rollouts=engine)


def test_same_prompt_allows_only_unexpanded_video_placeholders():
    from vtg_data.train.rollouts import same_prompt

    ours = [1, 2, 9, 9, 9, 9, 3]
    assert same_prompt(ours, list(ours), video_token=9)
    assert same_prompt(ours, [1, 2, 9, 3], video_token=9)  # the engine reports the prompt before expansion
    assert not same_prompt(ours, [1, 2, 9, 9, 3], video_token=9)  # expanded, but another video size
    assert not same_prompt(ours, [1, 4, 9, 3], video_token=9)
    assert not same_prompt(ours, [1, 2, 9, 3], video_token=None)


def test_vllm_rollouts_are_refused_where_they_cannot_run(root, init, tmp_path):
    from types import SimpleNamespace

    from vtg_data.train.grpo import GRPOConfig, make_rollouts

    cfg = config(root, init, tmp_path / "rl", rollouts="vllm")
    two = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2), source=str(init))
    with pytest.raises(ValueError, match="one engine beside one trainer process"):
        make_rollouts(cfg, two)
    with pytest.raises(ValueError, match="rollouts must be 'hf' or 'vllm'"):
        GRPOConfig(**{**cfg.__dict__, "rollouts": "sglang"})
    if not HAS_VLLM:
        from typer.testing import CliRunner

        from vtg_data.cli import app

        run = CliRunner().invoke(app, ["train", "rl", "--model", str(init), "--data", str(root / "normalized/synthetic/train.parquet"),
                                       "--video-root", str(root / "videos"), "--out", str(tmp_path / "cli"), "--prompt", "compact",
                                       "--steps", "1", "--prompts-per-step", "2", "-k", "2", "--rollouts", "vllm"])  # fmt: skip
        assert run.exit_code != 0 and "pip install 'vtg-data[vllm]'" in run.output


@pytest.mark.skipif(not (HAS_VLLM and torch.cuda.is_available()), reason="needs vLLM and a GPU")
def test_grpo_with_a_real_vllm_engine(root, init, tmp_path):
    from vtg_data.train.grpo import train_grpo

    cfg = config(root, init, tmp_path / "rl", rollouts="vllm", vllm_gpu_memory=0.2, vllm_max_model_len=4096)
    result = train_grpo(cfg)
    assert [r["step"] for r in result["history"]] == [1, 2, 3]
    assert all(r["completion_tokens"] > 0 for r in result["history"])
    assert json.loads((tmp_path / "rl/config.json").read_text())["config"]["rollouts"] == "vllm"
