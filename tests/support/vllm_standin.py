"""A stand-in for ``vllm.LLM`` where vLLM cannot run (it is a CUDA-only wheel that pins its own
torch and transformers): the calls the rollout engine makes (``generate``, ``apply_model``,
``reset_prefix_cache``), answered by a transformers copy of the model that runs the model's own
processor on the request, as vLLM does with ``mm_processor_kwargs``."""

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

    def apply_model(self, function):
        return [function(_WeightLoader(self))]

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
            torch.manual_seed(sampling.seed)
            suppress = [token for token, bias in (sampling.logit_bias or {}).items() if bias <= -100]
            # vLLM uses a SamplingParams as given (its fields default to neutral values: top_k off,
            # min_p 0, repetition_penalty 1); the checkpoint's generation config is only consulted
            # when no SamplingParams is passed. So nothing may come from the model's config here.
            neutral = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
            fields = {name: getattr(sampling, name, default) for name, default in neutral.items()}
            fields["top_k"] = max(fields["top_k"], 0)  # -1 and 0 both mean off
            config = GenerationConfig(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                                      max_new_tokens=sampling.max_tokens, num_return_sequences=sampling.n,
                                      suppress_tokens=suppress, pad_token_id=pad, eos_token_id=eos, **fields)  # fmt: skip
            with torch.no_grad(), neutral_generation_defaults(self.model):
                generated = self.model.generate(**inputs, generation_config=config)
            outputs = []
            for row in generated[:, inputs["input_ids"].shape[1] :].tolist():
                stopped = eos in row
                ids = row[: row.index(eos) + (1 if self.report_eos else 0)] if stopped else row
                outputs.append(SimpleNamespace(token_ids=ids, finish_reason="stop" if stopped else "length"))
            results.append(SimpleNamespace(prompt_token_ids=inputs["input_ids"][0].tolist(), outputs=outputs))
        return results
