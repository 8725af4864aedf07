"""One explicit sampling distribution for every local model call, whatever the checkpoint ships.

Qwen2.5-VL-7B-Instruct's ``generation_config.json`` sets ``top_k 1, top_p 0.001,
repetition_penalty 1.05, temperature 0.1``. ``transformers`` fills every generation field a call
leaves unset from that file, so a call that asks only for ``temperature=1.0`` samples greedily:
k rollouts come out identical and GRPO learns nothing. Here nothing is inherited:

- ``neutral_generation_defaults(model)`` hides the checkpoint's generation config while a call
  runs (only its stop and pad tokens are kept), and ``generation_config(params)`` states every
  field that shapes the distribution;
- ``SeededSampler`` draws each token itself, from probabilities computed in float64 after
  temperature, top-k, top-p and min-p, with one random generator per (seed, prompt, rollout):
  a token that flips on another machine (a last-bit difference in the logits) changes only
  that rollout's later tokens, never every later draw of the batch;
- ``policy_logprobs`` gives a trainer the log-probabilities of exactly that distribution.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Iterator, Sequence

from vtg_data.lvlm.base import GenerationParams

# Fields of a generation config that change which tokens are drawn, and their neutral values.
NEUTRAL_SAMPLING = {
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "sequence_bias": None,
    "min_length": 0,
    "min_new_tokens": None,
    "num_beams": 1,
    "guidance_scale": None,
}
# Fields a neutral config keeps from the checkpoint: when to stop, how to pad.
KEPT_FIELDS = ("eos_token_id", "pad_token_id", "bos_token_id", "decoder_start_token_id")


def checkpoint_sampling(generation_config) -> dict:
    """The fields of a checkpoint's generation config that would change sampling if inherited
    (``do_sample`` included when it is set): what a caller is told is being ignored."""
    if generation_config is None:
        return {}
    found = {}
    for name, neutral in NEUTRAL_SAMPLING.items():
        value = getattr(generation_config, name, None)
        if value is not None and value != neutral and not (name == "top_k" and value in (0, 50)):
            found[name] = value
    if getattr(generation_config, "do_sample", False):
        found["do_sample"] = True
    return found


def describe(params: GenerationParams) -> str:
    """The distribution in words, for warnings and logs."""
    if params.greedy:
        return "greedy (temperature 0)"
    top_k = f"top_k {params.top_k}" if params.top_k else "top_k off"
    return (
        f"temperature {params.temperature:g}, top_p {params.top_p:g}, {top_k}, min_p {params.min_p:g}, "
        f"repetition_penalty {params.repetition_penalty:g}"
    )


# What ``generate`` applies on its greedy path, set to do nothing unless asked for.
GREEDY_PATH_NEUTRAL = {
    "num_beams": 1,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0,
    "min_length": 0,
}


def generation_config(params: GenerationParams, *, pad_token_id: int | None, suppress_tokens: Sequence[int]):
    """The ``GenerationConfig`` of a call. Tokens are drawn by ``SeededSampler`` (a logits
    processor), so ``generate`` runs its greedy path: only the repetition penalty (if asked for)
    and the suppressed tokens act before the draw; temperature, top-k, top-p and min-p are ours.
    With ``neutral_generation_defaults`` around the call nothing else comes from the checkpoint.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        **GREEDY_PATH_NEUTRAL,
        max_new_tokens=params.max_tokens,
        do_sample=False,
        repetition_penalty=params.repetition_penalty,
        pad_token_id=pad_token_id,
        suppress_tokens=list(suppress_tokens) or None,
    )


@contextlib.contextmanager
def neutral_generation_defaults(model) -> Iterator[None]:
    """Hide every generation config inside ``model`` (peft and other wrappers included) behind a
    neutral one that keeps only the stop and pad tokens, restoring them afterwards, so no field a
    call leaves unset is filled from the checkpoint."""
    from transformers import GenerationConfig

    swapped = []
    for module in model.modules():
        config = vars(module).get("generation_config")
        if isinstance(config, GenerationConfig):
            kept = {
                name: getattr(config, name) for name in KEPT_FIELDS if getattr(config, name, None) is not None
            }
            module.generation_config = GenerationConfig(**kept)
            swapped.append((module, config))
    try:
        yield
    finally:
        for module, config in swapped:
            module.generation_config = config


def rollout_seed(seed: int, uid: str, rollout: int) -> int:
    """The random stream of one rollout of one prompt: independent of batch order and size."""
    digest = hashlib.sha256(f"{seed}|{uid}|{rollout}".encode()).hexdigest()
    return int(digest[:15], 16)


def filtered_scores(scores, params: GenerationParams):
    """Float64 log-weights of the sampling distribution (temperature, top-k, top-p, min-p applied;
    excluded tokens at -inf). Rows are independent."""
    import torch

    logits = scores.double() / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        before = torch.cumsum(probs, dim=-1) - probs  # mass of the tokens ranked above
        drop = before >= params.top_p  # keep the smallest head whose mass reaches top_p
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    if params.min_p > 0:
        probs = torch.softmax(logits, dim=-1)
        floor = params.min_p * probs.max(dim=-1, keepdim=True).values
        logits = logits.masked_fill(probs < floor, float("-inf"))
    return logits


class SeededSampler:
    """A logits processor that draws the next token of every row from ``params``'s distribution
    with that row's own generator, and returns scores that make ``generate``'s greedy step take
    exactly that token. Rows are (prompt, rollout) in the order ``generate`` holds them."""

    def __init__(self, params: GenerationParams, seeds: Sequence[int]):
        import torch

        self.torch = torch
        self.params = params
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids, scores):
        torch = self.torch
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"sampler built for {len(self.generators)} rows, got {scores.shape[0]}")
        logits = filtered_scores(scores, self.params)
        cumulative = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
        draws = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators])
        draws = draws.to(cumulative.device).unsqueeze(-1) * cumulative[..., -1:]
        chosen = torch.searchsorted(cumulative, draws).clamp_(max=scores.shape[-1] - 1)
        # a token of zero probability is never chosen (searchsorted lands on the first index whose
        # cumulative mass reaches the draw, which a zero-probability token never adds)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(-1, chosen, 0.0)


def policy_logprobs(logits, temperature: float, suppressed: Sequence[int] = ()):
    """Log-probabilities of the distribution rollouts are drawn from (temperature and suppressed
    tokens, no truncation), for the trainer's ratio and entropy. ``logits`` (..., V)."""
    import torch

    scaled = logits / temperature if temperature > 0 else logits
    if suppressed:
        # a probability of exactly 0 (exp(-1e4)), yet a finite log: an engine whose suppression is a
        # -100 logit bias (vLLM) cannot turn a rare draw into an infinite loss
        index = torch.as_tensor(list(suppressed), device=logits.device)
        scaled = scaled.index_fill(-1, index, -1e4)
    return torch.log_softmax(scaled, dim=-1)


_WARNED: set[str] = set()


def warn_ignored(model_name: str, ignored: dict, params: GenerationParams) -> None:
    """Say once per model which of the checkpoint's sampling fields are not used."""
    if not ignored or model_name in _WARNED:
        return
    _WARNED.add(model_name)
    listed = ", ".join(f"{k}={v}" for k, v in sorted(ignored.items()))
    warnings.warn(
        f"{model_name}: its generation_config.json sets {listed}; not used. Sampling is exactly "
        f"{describe(params)} (change it with --temperature, --top-p, --top-k, --repetition-penalty).",
        stacklevel=3,
    )
