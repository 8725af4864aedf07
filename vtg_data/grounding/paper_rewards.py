"""The papers' own rewards, reproduced to the bit, quirks included, and corrected variants beside them.

- TVG-R1 ``tvgonly`` (EasyR1/verl/utils/reward_score/tvgonly.py @793b3dc): 0.1 x format + 0.9 x IoU.
  Format: the whole answer matches ``<think>.*</think>.*<time>.*</time>.*``. IoU: the first
  ``<time>`` block is JSON that unpacks into two values converted with ``float`` (so
  ``["12.5", "20.0"]`` counts), both windows divided by the video's length, intersection over the
  hull; any failure, a zero hull included, gives 0 (so an exact zero-length answer to a
  zero-length truth scores 0.1).
- TVG-R1 ``tvg`` (its multiple-choice score, ``tvg.py``): 0.7 x option accuracy (the first
  ``\\boxed{...}`` equals the letter) + 0.1 x format (``...<time>...</time>...\\boxed{...}...``)
  + 0.2 x IoU.
- Time-R1 ``iou_v2`` + ``format`` (``main.py`` @7f2b594, summed by its GRPO trainer). IoU: the last
  ``s to e`` / ``s and e`` of the last ``<answer>`` block, times (1 - |start error| / duration) x
  (1 - |end error| / duration), which goes negative when an answer runs past the video; no
  ``<answer>`` block gives 0; a zero hull (the answer and the truth the same instant) is an error
  there (the variable is never set) and here. Format: after stripping, ``<think>.*?</think>\\s*
  <answer>.*?</answer>`` must match the whole text, which a second ``<answer>`` block still does.

Corrected variants (``*_corrected`` presets): an exact zero-length answer scores full IoU; the
distance factors are floored at 0; a zero hull is 0, not an error; Time-R1's format takes exactly
one ``<think>`` and one ``<answer>`` block.
"""

from __future__ import annotations

import json
import re

_TVG_FORMAT = re.compile(r"<think>.*</think>.*<time>.*</time>.*", re.DOTALL)
_TVG_MC_FORMAT = re.compile(r"<think>.*</think>.*<time>.*</time>.*\\boxed\{.*\}.*", re.DOTALL)
_TIME_BLOCK = re.compile(r"<time>(.*?)</time>", re.DOTALL)
_ANSWER_BLOCKS = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_TO_AND = re.compile(r"(\d+\.?\d*) (to|and) (\d+\.?\d*)", re.IGNORECASE)
_TIME_R1_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_ONE_THINK_ONE_ANSWER = re.compile(
    r"<think>(?:(?!</?think>|</?answer>).)*</think>\s*<answer>(?:(?!</?answer>|</?think>).)*</answer>",
    re.DOTALL,
)


class RewardError(ValueError):
    """The paper's own reward fails on this answer (its training would stop there)."""


def tvg_format(text: str, multiple_choice: bool = False) -> float:
    pattern = _TVG_MC_FORMAT if multiple_choice else _TVG_FORMAT
    return 1.0 if pattern.fullmatch(text) else 0.0


def _hull_iou(a: tuple[float, float], b: tuple[float, float], *, zero_hull_exact: bool) -> float:
    """TVG-R1's ``temporal_iou``: clipped intersection over the hull, the same expressions in the
    same order (Python's max/min, NaN included)."""
    high_start, low_start = max(a[0], b[0]), min(a[0], b[0])
    high_end, low_end = max(a[1], b[1]), min(a[1], b[1])
    hull = high_end - low_start
    if hull == 0 and zero_hull_exact:
        return 1.0 if (a[0], a[1]) == (b[0], b[1]) else 0.0
    value = max(low_end - high_start, 0) / hull  # ZeroDivisionError: the caller's failure path
    return max(0, value)


def tvg_iou(text: str, truth: tuple[float, float], duration: float, *, corrected: bool = False) -> float:
    try:
        start, end = json.loads(_TIME_BLOCK.search(text).group(1).strip())
        answer = (float(start) / duration, float(end) / duration)
        gt = (float(truth[0]) / duration, float(truth[1]) / duration)
        return _hull_iou(answer, gt, zero_hull_exact=corrected)
    except Exception:  # TVG-R1's own failure path: any error scores 0
        return 0.0


def boxed_choice(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces, stripped), as mathruler extracts it."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == -1:
            return text[begin:i].strip()
    return None


_WRAPPERS = re.compile(r"^\\text(?:bf)?\{(.*)\}$|^\{(.*)\}$|^\((.*)\)$")


def choice_matches(chosen: str | None, letter: str) -> bool:
    """Whether a boxed answer names the option ``letter`` as mathruler's grader decides it for a
    letter: ``A``, ``a``, ``(A)``, ``\\text{A}``, ``{A}`` do; ``A.``, ``A)``, ``A. text``, ``AB`` do not."""
    if chosen is None:
        return False
    value = chosen.strip()
    while (match := _WRAPPERS.match(value)) is not None:
        value = next(group for group in match.groups() if group is not None).strip()
    return value.upper() == letter.strip().upper()


def tvgonly_reward(text: str, truth, duration: float, *, corrected: bool = False) -> dict[str, float]:
    accuracy, form = tvg_iou(text, truth, duration, corrected=corrected), tvg_format(text)
    return {"format": form, "iou": accuracy, "total": 0.1 * form + 0.9 * accuracy}


def tvg_mc_reward(text: str, truth, duration: float, letter: str) -> dict[str, float]:
    """TVG-R1's multiple-choice score: the boxed letter right (0.7), format (0.1), IoU (0.2)."""
    correct = 1.0 if choice_matches(boxed_choice(text), letter) else 0.0
    accuracy, form = tvg_iou(text, truth, duration), tvg_format(text, multiple_choice=True)
    return {
        "choice": correct,
        "format": form,
        "iou": accuracy,
        "total": 0.7 * correct + 0.1 * form + 0.2 * accuracy,
    }


def time_r1_window(text: str) -> tuple[float, float] | None:
    blocks = _ANSWER_BLOCKS.findall(text)
    if not blocks:
        return None
    matches = _TO_AND.findall(blocks[-1])
    if not matches:
        return None
    start, _, end = matches[-1]
    return float(start), float(end)


def time_r1_iou_v2(text: str, truth, duration: float, *, corrected: bool = False) -> float:
    window = time_r1_window(text)
    if window is None:
        return 0.0
    start, end = window
    s, e = truth
    intersection = max(0, min(end, e) - max(start, s))
    union = max(end, e) - min(start, s)
    if union > 0:
        iou = intersection / union
    elif corrected:
        iou = 1.0 if (start, end) == (s, e) else 0.0
    else:
        raise RewardError(f"Time-R1's iou_v2 is undefined for {window} against {list(truth)} (zero union)")
    near_start = 1 - abs(1.0 * s / duration - 1.0 * start / duration)
    near_end = 1 - abs(1.0 * e / duration - 1.0 * end / duration)
    if corrected:
        near_start, near_end = max(0.0, near_start), max(0.0, near_end)
    return iou * near_start * near_end


def time_r1_format(text: str, *, corrected: bool = False) -> float:
    pattern = _ONE_THINK_ONE_ANSWER if corrected else _TIME_R1_FORMAT
    return 1.0 if pattern.fullmatch(text.strip()) else 0.0


def time_r1_reward(text: str, truth, duration: float, *, corrected: bool = False) -> dict[str, float]:
    value = time_r1_iou_v2(text, truth, duration, corrected=corrected)
    form = time_r1_format(text, corrected=corrected)
    return {"timestamp_iou": value, "format": form, "total": value + form}
