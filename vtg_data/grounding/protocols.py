"""Evaluation protocols: the whole scoring convention of one paper, so a number can stand next to it.

A protocol says how an answer is read (including what happens when it cannot be), whether it is
clamped to the video, how its IoU is computed (formula and float arithmetic), the hit rule, and how
several ground-truth windows count. The papers differ on every point, and by several R1 points on
the same answers. Each is written from the behaviour of the paper's own evaluator (the test
vectors in ``tests/grounding/golden/paper_vectors.json`` were made by running it):

- ``vtg-data`` (default): the tolerant reader (every ``<time>``/``<answer>`` block, brackets,
  ranges, ``to``, clock times, units; reversed pairs swapped), clamped to the video, the best
  matching ground-truth window, exact arithmetic, the hit rule of ``--hit-rule`` (``>=``).
- ``tvg_r1``: TVG-R1's evaluator (VideoMind's ``eval_auto.py``). Charades-STA, NExT-GQA, CG-Bench
  and ReXTime answers: the first two numbers (``\\d+\\.?\\d*``, signs ignored) of the first
  single-line ``<time>`` block, or of the whole answer without one; other sources (ActivityNet
  ...): the first ``<time>`` block read as ``[s, e]`` with ``mm:ss`` allowed, ``[0, 0]`` when that
  fails. Not clamped; IoU in float32 (torch), best over the windows; hit ``>=`` in float32.
- ``time_r1``: Time-R1's evaluator (``evaluate.py`` ``extract_answer``, ``eval_all.py``): the last
  ``s to e`` / ``s and e`` in the whole answer (reasoning included), else IoU 0; not clamped; IoU
  over the windows' hull in float64 (a zero union gives NaN, as there); hit ``>``.
- ``timelens``: TimeLens's evaluator (``evaluation/compute_metrics.py``, ``timelens/utils.py``):
  clock times first, then ``s - e`` or ``s to e`` pairs, then any two numbers; the first pair; none
  scores 0; not clamped; hull IoU in Python floats (a zero hull divides by zero there: an error
  here too); hit ``>=``.

Several ground-truth windows: ``tvg_r1`` scores the best, as its evaluator does; the Time-R1 and
TimeLens evaluators take one window, and here the best counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from vtg_data.grounding.metrics import best_match, is_hit
from vtg_data.grounding.parse import parse_answer

Window = list[float]


class ProtocolError(ValueError):
    """The paper's evaluator itself fails on this answer (it would stop there)."""


@dataclass(frozen=True)
class Reading:
    """An answer as a protocol reads it: the window it scores (None: nothing, IoU 0) and why."""

    window: Window | None
    status: str = "ok"  # ok, or the reason nothing (or a degenerate window) was read


@dataclass(frozen=True)
class Protocol:
    name: str
    origin: str  # repository@commit: file(s) the convention is taken from
    summary: str
    read: Callable[[str, dict], Reading]
    score: Callable[[Window | None, Sequence[Sequence[float]]], float]
    hit: Callable[[float, float], bool]
    clamped: bool

    def card(self) -> dict:
        return {"name": self.name, "origin": self.origin, "summary": self.summary, "clamped": self.clamped}


# ---------------------------------------------------------------------------------------------
# vtg-data: the project's own convention


def _read_tolerant(text: str, row: dict) -> Reading:
    parsed = parse_answer(text, row["duration"], "tolerant")
    return Reading(list(parsed.windows[0]) if parsed.ok else None, parsed.status)


def _score_best(window, truth) -> float:
    return best_match(window, truth)[0] if window is not None else 0.0


# ---------------------------------------------------------------------------------------------
# TVG-R1 (VideoMind's eval_auto.py)

_NUMBERS_SOURCES = ("charades_sta", "nextgqa", "cgbench", "rextime")
_TIME_BLOCK = re.compile(r"<time>(.*?)</time>")  # one line: no DOTALL, as there
_UNSIGNED = re.compile(r"\d+\.?\d*")


def _read_tvg_r1(text: str, row: dict) -> Reading:
    block = _TIME_BLOCK.search(text)
    if row.get("source") in _NUMBERS_SOURCES:
        numbers = [float(n) for n in _UNSIGNED.findall(block.group(1) if block else text)[:2]]
        if not numbers:
            return Reading([0.0, 0.0], "no_window")
        return Reading(numbers, "ok" if len(numbers) == 2 else "not_a_pair")
    if block is None:
        return Reading([0.0, 0.0], "no_answer")
    try:
        values = [_bracket_time(part) for part in block.group(1).strip("[]").replace(" ", "").split(",")]
    except ValueError:
        return Reading([0.0, 0.0], "bad_window")
    return Reading(values, "ok" if len(values) == 2 else "not_a_pair")


def _bracket_time(part: str) -> float:
    """``12.5`` or ``m:ss`` (exactly two fields); anything else is an error, as there."""
    if ":" in part:
        fields = part.split(":")
        if len(fields) != 2:
            raise ValueError(part)
        minutes, seconds = float(fields[0]), float(fields[1])
        return minutes * 60 + seconds
    return float(part)


def _score_tvg_r1(window, truth) -> float:
    """nncore's temporal IoU on float32 tensors: areas may be negative (reversed windows), a
    non-finite value counts 0; a window of other than two numbers fails (0). Best over the truth."""
    if window is None or len(window) < 2:
        return 0.0
    f32 = np.float32
    start, end = f32(window[0]), f32(window[1])
    area = end - start
    best = f32(0.0)
    with np.errstate(all="ignore"):
        values = []
        for gt_start, gt_end in truth:
            gs, ge = f32(gt_start), f32(gt_end)
            inter = np.maximum(np.minimum(end, ge) - np.maximum(start, gs), f32(0.0))  # NaN stays NaN
            value = inter / ((area + (ge - gs)) - inter)
            values.append(value if np.isfinite(value) else f32(0.0))
    if values:
        best = max(values)
    return float(best)


def _hit_float32(value: float, threshold: float) -> bool:
    return bool(np.float32(value) >= np.float32(threshold))


# ---------------------------------------------------------------------------------------------
# Time-R1 (evaluate.py extract_answer, eval_all.py compute_IoU / calc_score)

_TO_AND = re.compile(r"(\d+\.?\d*) (to|and) (\d+\.?\d*)")


def _read_time_r1(text: str, row: dict) -> Reading:
    matches = _TO_AND.findall(text)
    if not matches:
        return Reading(None, "no_window")
    start, _, end = matches[-1]
    return Reading([float(start), float(end)], "ok")


def _score_hull(window, truth) -> float:
    """Intersection over the hull, float64 (numpy): a zero hull gives NaN, as there."""
    if window is None:
        return 0.0
    best = -math.inf
    with np.errstate(all="ignore"):
        for gt_start, gt_end in truth:
            inter = np.maximum(0.0, np.minimum(window[1], gt_end) - np.maximum(window[0], gt_start))
            hull = np.maximum(0.0, np.maximum(window[1], gt_end) - np.minimum(window[0], gt_start))
            value = float(1.0 * inter / hull)
            if math.isnan(value):
                return value
            best = max(best, value)
    return best


def _hit_above(value: float, threshold: float) -> bool:
    return value > threshold


# ---------------------------------------------------------------------------------------------
# TimeLens (evaluation/compute_metrics.py, timelens/utils.py)

_CLOCK = re.compile(r"\b(\d{1,2}:\d{2}:\d{2}(?:\.\d+)?|\d{1,2}:\d{2}(?:\.\d+)?)\b")
_DASH = re.compile(r"(\d+\.?\d*)\s*-\s*(\d+\.?\d*)")
_TO = re.compile(r"(\d+\.?\d*)\s+to\s+(\d+\.?\d*)")
_BARE = re.compile(r"\b(\d+\.\d+|\d+)\b")


def timelens_pairs(text: str) -> list[tuple[float, float]]:
    """Every (start, end) TimeLens's reader finds, in its order of preference."""
    text = text.lower()
    clocks = _CLOCK.findall(text)
    clocks = clocks[: len(clocks) // 2 * 2]
    if clocks:
        seconds = []
        for token in clocks:
            fields = token.split(":")
            if len(fields) == 3:
                seconds.append(float(int(fields[0]) * 3600 + int(fields[1]) * 60 + float(fields[2])))
            else:
                seconds.append(float(int(fields[0]) * 60 + float(fields[1])))
        return [(seconds[i], seconds[i + 1]) for i in range(0, len(seconds), 2)]
    for pattern in (_DASH, _TO):
        found = pattern.findall(text)
        if found:
            return [(float(a), float(b)) for a, b in found]
    numbers = _BARE.findall(text)
    numbers = numbers[: len(numbers) // 2 * 2]
    return [(float(numbers[i]), float(numbers[i + 1])) for i in range(0, len(numbers), 2)]


def _read_timelens(text: str, row: dict) -> Reading:
    pairs = timelens_pairs(text)
    if not pairs:
        return Reading([-100.0, -100.0], "no_window")
    start, end = pairs[0]
    return Reading([start, end], "ok" if start < end else "reversed")


def _score_timelens(window, truth) -> float:
    best = -math.inf
    for gt in truth:
        start0, end0 = max(gt[0], window[0]), min(gt[0], window[0])
        start1, end1 = max(gt[1], window[1]), min(gt[1], window[1])
        if start1 - end0 == 0:
            raise ProtocolError(f"TimeLens's IoU divides by zero for {window} against {list(gt)}")
        best = max(best, max(end1 - start0, 0) / (start1 - end0))
    return best


def _hit_at_least(value: float, threshold: float) -> bool:
    return value >= threshold


PROTOCOLS: dict[str, Protocol] = {
    "vtg-data": Protocol(
        "vtg-data", "this toolkit: vtg_data/grounding/parse.py and metrics.py",
        "tolerant reader, clamped to the video, best window, exact arithmetic, --hit-rule",
        _read_tolerant, _score_best, is_hit, clamped=True,
    ),
    "tvg_r1": Protocol(
        "tvg_r1", "zjuruizhechen/TVG-R1@793b3dc: VideoMind/videomind/eval/eval_auto.py",
        "first <time> block (Charades/NExT-GQA/ReXTime: first two numbers), unclamped, float32 IoU, >=",
        _read_tvg_r1, _score_tvg_r1, _hit_float32, clamped=False,
    ),
    "time_r1": Protocol(
        "time_r1", "xiaomi-research/time-r1@7f2b594: evaluate.py (extract_answer), src/vllm_inference/eval_all.py",
        "last 's to e' / 's and e' anywhere, unclamped, hull IoU (float64), >",
        _read_time_r1, _score_hull, _hit_above, clamped=False,
    ),
    "timelens": Protocol(
        "timelens", "TencentARC/TimeLens@5d90c06: evaluation/compute_metrics.py, timelens/utils.py (extract_time, iou)",
        "clock times, then 's - e' / 's to e', then two numbers; first pair; unclamped, hull IoU, >=",
        _read_timelens, _score_timelens, _hit_at_least, clamped=False,
    ),
}  # fmt: skip


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]


def score_answer(protocol: Protocol, text: str, row: dict) -> tuple[float, Reading]:
    """(IoU, reading) of one answer under ``protocol``; ``row`` has ``windows``, ``duration``,
    ``source``."""
    reading = protocol.read(text if isinstance(text, str) else "", row)
    return protocol.score(reading.window, row["windows"]), reading
