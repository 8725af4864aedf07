"""The functions other tools call on our exports: reward functions and evaluation task hooks.

Each consumer loads a small file written beside the export (``vtg-data export``) that imports
one of these, so the scoring a consumer applies is the project's own (the ``tvg_r1`` reward, the
same parser and IoU as ``vtg-data eval``) and is tested here, not copied into generated text.
Only the light part of the package is imported: a consumer's environment needs ``pip install
vtg-data`` and nothing else.

- EasyR1 (``worker.reward.reward_function``): ``easyr1_compute_score`` reads the exported answer,
  a JSON string ``{"windows": [[s, e], ...], "duration": d}``.
- TRL (``GRPOTrainer(reward_funcs=...)``): ``trl_reward`` takes the ``solution`` (windows) and
  ``duration`` columns TRL passes as keyword arguments.
- lmms-eval (task YAML ``!function utils.*``): ``lmms_eval_hooks`` gives ``doc_to_visual``,
  ``doc_to_text``, ``doc_to_target`` and ``process_results``, which scores every ground-truth
  window (the best match counts, as in ``vtg-data eval``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vtg_data.grounding.metrics import best_match, is_hit
from vtg_data.grounding.parse import parse_answer
from vtg_data.grounding.rewards import compute_reward

EASYR1_REWARD_NAME = "vtg_data"
EASYR1_REWARD_TYPE = "sequential"
LMMS_THRESHOLDS = (0.3, 0.5, 0.7)


def answer_json(windows: Sequence[Sequence[float]], duration: float) -> str:
    """The ground truth as one string (EasyR1 passes the answer column to the reward verbatim)."""
    return json.dumps({"windows": [[float(s), float(e)] for s, e in windows], "duration": float(duration)})


def easyr1_compute_score(reward_input: Mapping[str, Any], preset: str = "tvg_r1") -> dict[str, float]:
    """EasyR1's sequential reward: ``{response, response_length, ground_truth}`` -> its scores."""
    truth = json.loads(reward_input["ground_truth"])
    result = compute_reward(reward_input["response"], truth, preset)
    return {
        "overall": result.total,
        "format": result.components.get("format", 0.0),
        "accuracy": result.components.get("iou", result.components.get("timestamp_iou", 0.0)),
    }


def _completion_text(completion: Any) -> str:
    """TRL hands conversational completions as ``[{"role": "assistant", "content": ...}]``."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message.get("content", "")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        parts.append(content or "")
    return "".join(parts)


def trl_reward(
    completions: Sequence[Any],
    solution: Sequence[Sequence[Sequence[float]]],
    duration: Sequence[float],
    preset: str = "tvg_r1",
    **_: Any,
) -> list[float]:
    """A TRL reward function: the ``tvg_r1`` reward of each completion against its row's windows."""
    return [
        compute_reward(_completion_text(c), {"windows": w, "duration": d}, preset).total
        for c, w, d in zip(completions, solution, duration, strict=True)
    ]


def lmms_eval_hooks(parse_mode: str, hit_rule: str = ">=") -> dict[str, Callable]:
    """The four task functions of an lmms-eval task over a ``vtg-data export --format lmms-eval`` file."""

    def doc_to_visual(doc: Mapping[str, Any]) -> list[str]:
        return [doc["video"]]

    def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping | None = None) -> str:
        return doc["prompt"]

    def doc_to_target(doc: Mapping[str, Any]) -> list[list[float]]:
        return doc["windows"]

    def process_results(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, float]:
        parsed = parse_answer(results[0], doc["duration"] if parse_mode == "tolerant" else None, parse_mode)
        value = best_match(parsed.windows[0], doc["windows"])[0] if parsed.ok and parsed.windows else 0.0
        scores = {f"r1_iou{int(t * 10):02d}": 100.0 * is_hit(value, t, hit_rule) for t in LMMS_THRESHOLDS}
        return scores | {"miou": 100.0 * value, "parse_failure": 0.0 if parsed.ok else 100.0}

    return {
        "doc_to_visual": doc_to_visual,
        "doc_to_text": doc_to_text,
        "doc_to_target": doc_to_target,
        "process_results": process_results,
    }
