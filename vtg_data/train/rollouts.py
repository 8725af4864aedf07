"""Where GRPO's rollouts come from: the policy itself (transformers ``generate`` with one shared
prefill per prompt), or a vLLM engine in the same process holding a copy of the policy.

Both return, for each prompt of a step, ``k`` completions as token ids that end with the end of
turn when the model ended it. The update then scores those tokens with the policy on the prompt
the trainer built, so the two must agree: the vLLM engine's prompt tokens are compared with the
trainer's and a difference stops the run (it would train on rollouts of another prompt).

vLLM's copy is refreshed before every step's rollouts: the policy's weights, named as a checkpoint
names them and with LoRA deltas merged (the policy itself is not touched), are loaded into the
engine's model in place, and its prefix cache is dropped (cached prompts were computed with the old
weights). The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the weights
pass by reference, on the same GPU, in ``gpu_memory_utilization`` of its memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from vtg_data.lvlm import GenerationParams


def completion_rows(ids: torch.Tensor, eos: int, pad: int) -> list[torch.Tensor]:
    """Generated rows (padded after the end of turn) -> the tokens up to and including it."""
    rows = []
    for row in ids:
        stop = (row == eos).nonzero()
        end = int(stop[0]) + 1 if len(stop) else int((row != pad).sum())
        rows.append(row[:end])
    return rows


BATCHINGS = ("padded", "equal-length")


class PolicyRollouts:
    """Rollouts from the policy being trained (the inference backend around it), generated from
    the prompt tensors the data loader prepared (no second pass through the processor).

    ``batching``: ``padded`` generates all prompts of a step in one left-padded batch;
    ``equal-length`` runs one batch per prompt length, without padding (on a GPU a padding mask
    sends attention to a slower path: benchmarks/RESULTS.md), in more generate calls.
    """

    name = "hf"
    needs_clips = False

    def __init__(self, backend, batching: str = "padded"):
        if batching not in BATCHINGS:
            raise ValueError(f"rollout batching must be one of {BATCHINGS}")
        self.backend = backend
        self.batching = batching

    def sync(self, model) -> None:
        """Nothing to do: the policy samples itself."""

    def sample(
        self, batch: Sequence[tuple], params: GenerationParams, prompts: Sequence[dict]
    ) -> list[torch.Tensor]:
        from vtg_data.train.data import left_pad

        tokenizer = self.backend.processor.tokenizer
        if self.batching == "padded":
            groups = [list(range(len(prompts)))]
        else:
            by_length: dict[int, list[int]] = {}
            for i, prompt in enumerate(prompts):
                by_length.setdefault(int(prompt["input_ids"].shape[1]), []).append(i)
            groups = list(by_length.values())
        rows: list[torch.Tensor | None] = [None] * (len(prompts) * params.n)
        for group in groups:
            inputs = {
                k: v.to(self.backend.device)
                for k, v in left_pad([prompts[i] for i in group], tokenizer.pad_token_id).items()
            }
            uids = [batch[i][0].uid for i in group]
            generated, _ = self.backend.generate_from_inputs(inputs, uids, params)
            done = completion_rows(generated.cpu(), tokenizer.eos_token_id, tokenizer.pad_token_id)
            for position, i in enumerate(group):
                rows[i * params.n : (i + 1) * params.n] = done[
                    position * params.n : (position + 1) * params.n
                ]
        return rows


def policy_weights(model) -> dict[str, torch.Tensor]:
    """The policy's weights under the names a checkpoint of it would use; a LoRA model's adapted
    layers come out as base + delta, computed aside (merging in place and back would leave rounding
    error in the base weights every step)."""
    if not hasattr(model, "peft_config"):
        return {name: tensor.detach() for name, tensor in model.state_dict().items()}
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer) and not module.merged:
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    delta = module.get_delta_weight(adapter)
                    deltas[f"{name}.weight"] = deltas.get(f"{name}.weight", 0) + delta
    weights = {}
    for name, tensor in base.state_dict().items():
        if ".lora_" in name:
            continue
        name = name.replace(".base_layer.", ".")
        weights[name] = (tensor + deltas[name].to(tensor.dtype) if name in deltas else tensor).detach()
    return weights


def same_prompt(ours: list[int], theirs: list[int], video_token: int | None) -> bool:
    """Whether the engine's prompt tokens are the trainer's: equal, or equal once each run of video
    placeholders is one token, where the engine reports the prompt before expanding them."""
    if ours == theirs:
        return True
    if video_token is None or len(theirs) >= len(ours):
        return False

    def collapsed(ids: list[int]) -> list[int]:
        return [t for i, t in enumerate(ids) if not (t == video_token and i and ids[i - 1] == video_token)]

    return collapsed(theirs) == theirs and collapsed(ours) == theirs


class VLLMRollouts:
    """Rollouts from a vLLM engine in this process; ``sync`` before each step's rollouts.

    ``llm`` and ``sampling`` are for an engine built elsewhere (by default ``vllm.LLM`` and
    ``vllm.SamplingParams``).
    """

    name = "vllm"
    needs_clips = True  # the engine runs its own processor on the frames

    def __init__(self, model: str, processor, suppress_tokens: Sequence[int], *, gpu_memory_utilization: float = 0.3,
                 max_model_len: int | None = None, engine_options: dict | None = None, llm: Any = None,
                 sampling: Callable[..., Any] | None = None):  # fmt: skip
        if llm is None or sampling is None:
            # in-process engine: its collective calls run here, so weights pass by reference (with
            # the engine in another process every sync would pickle the whole model)
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            try:
                import vllm
            except ImportError as error:
                raise ImportError(
                    "--rollouts vllm needs vLLM next to the trainer (pip install 'vtg-data[vllm]', "
                    "its own environment: it pins torch and transformers)"
                ) from error
            if llm is None:
                options = {"model": model, "limit_mm_per_prompt": {"video": 1, "image": 0},
                           "enable_prefix_caching": True, "gpu_memory_utilization": gpu_memory_utilization,
                           **({"max_model_len": max_model_len} if max_model_len else {}), **(engine_options or {})}  # fmt: skip
                llm = vllm.LLM(**options)
            sampling = sampling or vllm.SamplingParams
        self.llm = llm
        self.sampling = sampling
        self.processor = processor
        self.suppress = {int(t): -100.0 for t in suppress_tokens}
        self.video_token = getattr(processor, "video_token_id", None)
        self.syncs = 0

    def sync(self, model) -> None:
        weights = policy_weights(model)
        self.llm.apply_model(lambda engine_model: engine_model.load_weights(list(weights.items())))
        self.llm.reset_prefix_cache()  # cached prompt states were computed with the old weights
        self.syncs += 1

    def sample(
        self, batch: Sequence[tuple], params: GenerationParams, prompts: Sequence[dict]
    ) -> list[torch.Tensor]:
        from vtg_data.lvlm.vllm_engine import vllm_request, vllm_sampling

        tokenizer = self.processor.tokenizer
        eos = tokenizer.eos_token_id
        sampling = self.sampling(**vllm_sampling(params, logit_bias=self.suppress or None))
        outputs = self.llm.generate([vllm_request(self.processor, request, clip) for request, clip in batch], sampling,
                                    use_tqdm=False)  # fmt: skip
        rows = []
        for (request, _), prompt, output in zip(batch, prompts, outputs, strict=True):
            ours = prompt["input_ids"][0].tolist()
            theirs = list(output.prompt_token_ids or [])
            if not same_prompt(ours, theirs, self.video_token):
                at = next(
                    (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                    min(len(ours), len(theirs)),
                )
                raise ValueError(
                    f"{request.uid}: the vLLM engine built another prompt than the trainer ({len(theirs)} tokens "
                    f"against {len(ours)}, first difference at token {at}); its rollouts cannot be trained on"
                )
            for completion in output.outputs:
                ids = list(completion.token_ids)
                if eos in ids:
                    ids = ids[: ids.index(eos) + 1]
                elif completion.finish_reason == "stop":
                    ids.append(eos)  # the engine stopped at the end of turn without reporting it
                rows.append(torch.tensor(ids, dtype=torch.long))
        return rows
