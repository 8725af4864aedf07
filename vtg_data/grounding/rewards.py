"""Rewards shared by the RL trainer and the difficulty scorer: plain functions over
(completion text, sample), where a sample is a mapping with ``windows`` and ``duration`` (a
normalized row).

- ``format_reward``: ``strict`` asks for exactly one reasoning block then exactly one answer
  block and nothing else; ``lenient`` is TVG-R1's released rule (``<think>.*</think>.*<time>.*
  </time>.*``, anything may follow).
- ``iou_reward``: IoU of the first parsed window with the best-matching ground-truth window.
- ``timestamp_iou_reward``: IoU x (1 - |ds| / d) x (1 - |de| / d), the shape of Time-R1's
  ``iou_v2`` on the tolerant reader with the factors floored at 0 (a component for presets of one's
  own; the paper's exact reward is ``paper_rewards.time_r1_reward``), so a near miss earns more
  than a far one.

Presets (``PRESETS``): ``tvg_r1`` = TVG-R1's ``tvgonly`` and ``time_r1`` = Time-R1's ``iou_v2`` +
``format``, each reproduced exactly with its quirks (``paper_rewards``; test vectors made with the
papers' own code), and ``tvg_r1_corrected`` / ``time_r1_corrected`` without the quirks a user would
not want; ``iou_only``; ``tvg_r1_nothink``. A result keeps each component and the parse status, so
a trainer can log them and count parse failures. The papers' rewards score one window (TVG-R1's
``gt_frame``, Time-R1's ``solution``); a row with several ground-truth windows gets the best of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from vtg_data.grounding import paper_rewards
from vtg_data.grounding.metrics import iou
from vtg_data.grounding.parse import ParseResult, parse_answer

ANSWER_STYLES = ("think_time", "time", "think_answer")
_ANSWER_TAG = {"think_time": "time", "time": "time", "think_answer": "answer"}
_LENIENT = {
    "think_time": re.compile(r"^<think>.*</think>.*<time>.*</time>.*$", re.DOTALL),
    "time": re.compile(r"^<time>.*</time>.*$", re.DOTALL),
    "think_answer": re.compile(r"^<think>.*</think>.*<answer>.*</answer>.*$", re.DOTALL),
}


def _strict_pattern(style: str) -> re.Pattern:
    tag = _ANSWER_TAG[style]
    answer = rf"<{tag}>(?:(?!</?{tag}>|</?think>).)*</{tag}>"
    think = r"<think>(?:(?!</?think>|</?time>|</?answer>).)*</think>\s*" if style != "time" else ""
    return re.compile(rf"^\s*{think}{answer}\s*$", re.DOTALL)


_STRICT = {style: _strict_pattern(style) for style in ANSWER_STYLES}


def format_reward(text: str, style: str = "think_time", mode: str = "strict") -> float:
    if style not in ANSWER_STYLES:
        raise ValueError(f"unknown answer style {style!r}; choose one of {ANSWER_STYLES}")
    if mode not in ("strict", "lenient"):
        raise ValueError(f"unknown format mode {mode!r}")
    patterns = _STRICT if mode == "strict" else _LENIENT
    return 1.0 if isinstance(text, str) and patterns[style].match(text) else 0.0


def _gt(sample: Mapping) -> tuple[list, float]:
    windows = [tuple(w) for w in sample["windows"]]
    if not windows:
        raise ValueError(f"sample {sample.get('uid', '?')} has no ground-truth window to reward against")
    return windows, float(sample["duration"])


def _first_window(parsed: ParseResult):
    return parsed.windows[0] if parsed.ok and parsed.windows else None


def iou_reward(text: str, sample: Mapping, parse_mode: str = "tolerant") -> float:
    windows, duration = _gt(sample)
    pred = _first_window(parse_answer(text, duration if parse_mode == "tolerant" else None, parse_mode))
    return 0.0 if pred is None else max(iou(pred, gt) for gt in windows)


def timestamp_iou_reward(text: str, sample: Mapping, parse_mode: str = "tolerant") -> float:
    windows, duration = _gt(sample)
    pred = _first_window(parse_answer(text, duration if parse_mode == "tolerant" else None, parse_mode))
    if pred is None:
        return 0.0
    gt = max(windows, key=lambda w: iou(pred, w))
    near_start = max(0.0, 1.0 - abs(pred[0] - gt[0]) / duration)
    near_end = max(0.0, 1.0 - abs(pred[1] - gt[1]) / duration)
    return iou(pred, gt) * near_start * near_end


@dataclass(frozen=True)
class RewardPreset:
    name: str
    weights: dict[str, float]  # component -> weight; components: format, iou, timestamp_iou
    parse_mode: str = "tolerant"
    answer_style: str = "think_time"
    format_mode: str = "strict"
    paper: str | None = None  # a paper's own reward (paper_rewards), which then decides everything
    corrected: bool = False


@dataclass(frozen=True)
class RewardResult:
    total: float
    components: dict[str, float] = field(default_factory=dict)
    parse_status: str = "ok"
    parse_reason: str = ""


PRESETS: dict[str, RewardPreset] = {
    "tvg_r1": RewardPreset("tvg_r1", {"format": 0.1, "iou": 0.9}, parse_mode="strict", paper="tvgonly"),
    "tvg_r1_corrected": RewardPreset(
        "tvg_r1_corrected", {"format": 0.1, "iou": 0.9}, parse_mode="strict", paper="tvgonly", corrected=True
    ),
    "time_r1": RewardPreset(
        "time_r1", {"format": 1.0, "timestamp_iou": 1.0}, answer_style="think_answer", paper="time_r1"
    ),
    "time_r1_corrected": RewardPreset(
        "time_r1_corrected",
        {"format": 1.0, "timestamp_iou": 1.0},
        answer_style="think_answer",
        paper="time_r1",
        corrected=True,
    ),
    "iou_only": RewardPreset("iou_only", {"iou": 1.0}),
    # TVG-R1's weights for answers without a reasoning block: strict <time>[s, e]</time> and nothing else
    "tvg_r1_nothink": RewardPreset("tvg_r1_nothink", {"format": 0.1, "iou": 0.9}, answer_style="time"),
}


def compute_reward(text: str, sample: Mapping, preset: str | RewardPreset = "tvg_r1") -> RewardResult:
    spec = PRESETS[preset] if isinstance(preset, str) else preset
    windows, duration = _gt(sample)
    parsed = parse_answer(text, duration if spec.parse_mode == "tolerant" else None, spec.parse_mode)
    if spec.paper is not None:
        rule = {"tvgonly": paper_rewards.tvgonly_reward, "time_r1": paper_rewards.time_r1_reward}[spec.paper]
        answer = text if isinstance(text, str) else ""
        # the papers reward against one window; with several, the best of them
        values = max((rule(answer, window, duration, corrected=spec.corrected) for window in windows),
                     key=lambda v: v["total"])  # fmt: skip
        total = values.pop("total")
        return RewardResult(total, values, parsed.status, parsed.reason)
    components: dict[str, float] = {}
    for name in spec.weights:
        if name == "format":
            components[name] = format_reward(text, spec.answer_style, spec.format_mode)
        elif name == "iou":
            components[name] = iou_reward(text, sample, spec.parse_mode)
        elif name == "timestamp_iou":
            components[name] = timestamp_iou_reward(text, sample, spec.parse_mode)
        else:
            raise ValueError(f"unknown reward component {name!r}")
    total = sum(spec.weights[name] * value for name, value in components.items())
    return RewardResult(total, components, parsed.status, parsed.reason)
