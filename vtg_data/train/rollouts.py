"""Where GRPO's rollouts come from: the policy itself (transformers ``generate`` with one shared
prefill per prompt), or a vLLM engine in the same process holding a copy of the policy.

Both return, for each prompt of a step, ``k`` completions as token ids that end with the end of
turn when the model ended it. The update then scores those tokens with the policy on the prompt
the trainer built, so the two must agree: the vLLM engine's prompt tokens are compared with the
trainer's and a difference stops the run (it would train on rollouts of another prompt).

vLLM's copy is refreshed before every step's rollouts: the policy's weights, named as a checkpoint
names them and with LoRA deltas merged (the policy itself is not touched), go through vLLM's own
route for RL trainers, the workers' ``reload_weights`` (``model_executor/model_loader/reload``: each
layer is loaded as from a checkpoint and then processed again, so kernels that repack weights after
loading, as the CPU build's do, get the new ones), which also drops the encoder and multimodal
caches on the worker; the scheduler's encoder cache and the prefix cache are dropped here (cached
vision embeddings and prompts were computed with the old weights). A
version without that route gets the weights through the model's ``load_weights``. ``check_sync``
then compares the engine's greedy answer to one prompt, token by token with its log-probabilities,
with the trainer's model on the same tokens: a sync that did not land stops the run.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the weights pass by
reference, on the same GPU, in ``gpu_memory_utilization`` of its memory. Its threads make forking
unsafe (a data-loading worker forked beside them can hang for good inside an OpenMP call), so the
trainer starts its data-loading workers by ``spawn`` when this engine is in use
(``worker_start_method``).
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
    worker_start_method = None  # fork: nothing here forbids it

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


SYNC_CHECKS = ("first", "every", "off")


class SyncNotLanded(RuntimeError):
    """The engine answers otherwise than the trainer's model after a weight sync."""


class VLLMRollouts:
    """Rollouts from a vLLM engine in this process; ``sync`` before each step's rollouts.

    ``llm`` and ``sampling`` are for an engine built elsewhere (by default ``vllm.LLM`` and
    ``vllm.SamplingParams``). ``check_sync``: after the first sync (default), after every one, or
    never, the engine's greedy answer to a step's first prompt is scored by the trainer's model;
    a log-probability further than ``sync_tolerance`` from the engine's stops the run (float32 on
    both sides agree to about 1e-5; bfloat16 kernels differ more, hence the default).
    """

    name = "vllm"
    needs_clips = True  # the engine runs its own processor on the frames
    worker_start_method = "spawn"  # the engine's threads make a fork unsafe

    def __init__(self, model: str, processor, suppress_tokens: Sequence[int], *, gpu_memory_utilization: float = 0.3,
                 max_model_len: int | None = None, engine_options: dict | None = None, llm: Any = None,
                 sampling: Callable[..., Any] | None = None, check_sync: str = "first",
                 sync_tolerance: float = 0.1, check_tokens: int = 16):  # fmt: skip
        if check_sync not in SYNC_CHECKS:
            raise ValueError(f"check_sync must be one of {SYNC_CHECKS}")
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
        self.check_sync = check_sync
        self.sync_tolerance = sync_tolerance
        self.check_tokens = check_tokens
        self.syncs = 0
        self.sync_route = ""
        self.sync_checks: list[dict] = []  # one per checked sync: step, tokens, largest difference
        self._pending_check = False

    def sync(self, model) -> None:
        weights = list(policy_weights(model).items())
        try:
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True}
            )
            self.sync_route = "reload_weights"
        except (AttributeError, NotImplementedError) as error:
            if "reload_weights" not in str(error) and not isinstance(error, NotImplementedError):
                raise
            # a vLLM without the reload route: the model's own loader, as at start-up
            self.llm.apply_model(lambda engine_model: engine_model.load_weights(weights))
            self.sync_route = "load_weights"
        # vision embeddings and prompt states cached by the scheduler were computed with the old
        # weights: the worker's reload drops its encoder outputs, the scheduler must forget them too
        # (vLLM 0.32 otherwise asks the worker for an embedding it no longer has: "Encoder cache miss")
        engine = getattr(self.llm, "llm_engine", None)
        if hasattr(engine, "reset_encoder_cache"):
            engine.reset_encoder_cache()
        self.llm.reset_prefix_cache()
        self.syncs += 1
        self._model = model
        self._pending_check = self.check_sync == "every" or (self.check_sync == "first" and self.syncs == 1)

    def _check_prompt(self, request, prompt: dict, output) -> None:
        """The engine's prompt tokens must be the trainer's: rollouts of another prompt cannot be
        trained on."""
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

    def verify(self, request, clip, prompt: dict, model) -> dict:
        """The engine's greedy tokens for one prompt and their log-probabilities, against the
        trainer's model scoring the same tokens after the trainer's own prompt tokens."""
        from vtg_data.lvlm.vllm_engine import vllm_request

        greedy = self.sampling(n=1, temperature=0.0, max_tokens=self.check_tokens, logprobs=0, seed=0)
        output = self.llm.generate([vllm_request(self.processor, request, clip)], greedy, use_tqdm=False)[0]
        self._check_prompt(request, prompt, output)
        completion = output.outputs[0]
        tokens = list(completion.token_ids)
        engine = [
            float(entry[token].logprob) for entry, token in zip(completion.logprobs, tokens, strict=True)
        ]
        device = next(model.parameters()).device
        ids = torch.cat([prompt["input_ids"], torch.tensor([tokens])], dim=1).to(device)
        inputs = {k: v.to(device) for k, v in prompt.items() if k not in ("input_ids", "attention_mask")}
        if "mm_token_type_ids" in inputs:
            inputs["mm_token_type_ids"] = torch.cat(
                [inputs["mm_token_type_ids"], torch.zeros(1, len(tokens), dtype=inputs["mm_token_type_ids"].dtype,
                                                          device=device)], dim=1)  # fmt: skip
        was_training = model.training
        model.eval()
        inner = next((m for m in model.modules() if "rope_deltas" in vars(m)), None)
        if inner is not None:
            inner.rope_deltas = None
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits[0].float()
        model.train(was_training)
        start = prompt["input_ids"].shape[1]
        scored = torch.log_softmax(logits[start - 1 : start - 1 + len(tokens)], dim=-1)
        trainer = [float(scored[i, token]) for i, token in enumerate(tokens)]
        argmax_same = all(int(scored[i].argmax()) == token for i, token in enumerate(tokens))
        largest = max((abs(a - b) for a, b in zip(engine, trainer, strict=True)), default=0.0)
        return {"uid": request.uid, "tokens": len(tokens), "largest_logprob_difference": round(largest, 6),
                "engine_logprob_sum": round(sum(engine), 6), "same_greedy_tokens": argmax_same,
                "text": self.processor.tokenizer.decode(tokens)}  # fmt: skip

    def sample(
        self, batch: Sequence[tuple], params: GenerationParams, prompts: Sequence[dict]
    ) -> list[torch.Tensor]:
        from vtg_data.lvlm.vllm_engine import vllm_request, vllm_sampling

        if self._pending_check and batch:
            self._pending_check = False
            check = self.verify(batch[0][0], batch[0][1], prompts[0], self._model) | {"sync": self.syncs}
            self.sync_checks.append(check)
            if check["largest_logprob_difference"] > self.sync_tolerance:
                raise SyncNotLanded(
                    f"after weight sync {self.syncs} ({self.sync_route}) the vLLM engine's greedy answer to "
                    f"{check['uid']} differs from the trainer's model: log-probabilities up to "
                    f"{check['largest_logprob_difference']:.4f} apart (tolerance {self.sync_tolerance})"
                )
        tokenizer = self.processor.tokenizer
        eos = tokenizer.eos_token_id
        sampling = self.sampling(**vllm_sampling(params, logit_bias=self.suppress or None))
        outputs = self.llm.generate([vllm_request(self.processor, request, clip) for request, clip in batch], sampling,
                                    use_tqdm=False)  # fmt: skip
        rows = []
        for (request, _), prompt, output in zip(batch, prompts, outputs, strict=True):
            self._check_prompt(request, prompt, output)
            for completion in output.outputs:
                ids = list(completion.token_ids)
                if eos in ids:
                    ids = ids[: ids.index(eos) + 1]
                elif completion.finish_reason == "stop":
                    ids.append(eos)  # the engine stopped at the end of turn without reporting it
                rows.append(torch.tensor(ids, dtype=torch.long))
        return rows
