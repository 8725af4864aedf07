"""Turn a model's text into time windows, and say why when it cannot.

Two modes:

- ``strict``: TVG-R1's rule. The first ``<time>...</time>`` block must hold a JSON list of two
  numbers ``[start, end]`` with start <= end. Nothing else counts, nothing is repaired.
- ``tolerant``: what a careful reader accepts. Inside ``<time>`` or ``<answer>`` blocks when the
  text has them (every block, in order; times cited while reasoning are not mistaken for the
  answer), else anywhere:
  ``[s, e]``, ``(s, e)``, ``s - e``, ``s-e``, ``s to e``, ``from s to e seconds``, ``between s and
  e``, with ``5.2s`` / ``5.2 seconds`` units and ``mm:ss`` or ``hh:mm:ss(.ff)`` clock times;
  several windows; reversed pairs swapped; windows clamped to ``duration`` when it is given.

``parse_windows`` never raises on model text. ``parse_answer`` also returns a status and reason,
which every metric and reward counts: a parse failure is the model's failure, never silent.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

MODES = ("strict", "tolerant")

_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?"
_TIME = rf"(?:{_CLOCK}|{_NUMBER})"
_UNIT = r"(?:\s*(?:s|sec|secs|second|seconds)\b)?"
_BRACKET = re.compile(rf"[\[(]\s*({_TIME}){_UNIT}\s*,\s*({_TIME}){_UNIT}\s*[\])]", re.IGNORECASE)
_RANGE = re.compile(
    rf"(?:\b(?:from|between)\s+)?(?<![\d.:])({_TIME}){_UNIT}\s*(?:-|–|—|~|\bto\b|\buntil\b|\band\b)\s*({_TIME}){_UNIT}(?![\d:])",
    re.IGNORECASE,
)
_TAG = re.compile(r"<(time|answer)>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_STRICT_TAG = re.compile(r"<time>(.*?)</time>", re.DOTALL)


@dataclass(frozen=True)
class ParseResult:
    windows: list[tuple[float, float]]
    status: str  # "ok" or the failure: "no_answer", "no_window", "bad_json", "not_a_pair", "reversed"
    reason: str = ""
    repairs: frozenset[str] = field(default_factory=frozenset)  # "swapped", "clamped"

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def to_seconds(token: str) -> float:
    """``"83.5"``, ``"1:23.5"`` and ``"0:01:23.5"`` are all 83.5 seconds."""
    parts = token.split(":")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def parse_answer(text: object, duration: float | None = None, mode: str = "tolerant") -> ParseResult:
    if mode not in MODES:
        raise ValueError(f"unknown parse mode {mode!r}; choose one of {MODES}")
    if not isinstance(text, str) or not text.strip():
        return ParseResult([], "no_answer", "empty or non-text output")
    if mode == "strict":
        return _parse_strict(text)
    return _parse_tolerant(text, duration)


def parse_windows(
    text: object, duration: float | None = None, mode: str = "tolerant"
) -> list[tuple[float, float]]:
    """The windows in ``text`` (empty when nothing parses); see ``parse_answer`` for the status."""
    return parse_answer(text, duration, mode).windows


def _parse_strict(text: str) -> ParseResult:
    match = _STRICT_TAG.search(text)
    if match is None:
        return ParseResult([], "no_answer", "no <time>...</time> block")
    try:
        value = json.loads(match.group(1).strip())
    except json.JSONDecodeError:
        return ParseResult([], "bad_json", f"<time> content is not JSON: {match.group(1).strip()[:60]!r}")
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        )
    ):
        return ParseResult([], "not_a_pair", f"<time> content is not [start, end]: {str(value)[:60]!r}")
    start, end = float(value[0]), float(value[1])
    if start > end:
        return ParseResult([], "reversed", f"start {start} is after end {end}")
    return ParseResult([(start, end)], "ok")


def _parse_tolerant(text: str, duration: float | None) -> ParseResult:
    blocks = [m.group(2) for m in _TAG.finditer(text)]
    regions = blocks if blocks else [text]
    # every block contributes: "<time>[1, 2]</time> and <time>[4, 6]</time>" is a two-window answer
    pairs = [pair for region in regions for pair in _pairs_in(region)]
    if not pairs:
        where = "inside the answer block" if blocks else "in the text"
        return ParseResult([], "no_window", f"no [start, end] pair {where}")
    windows: list[tuple[float, float]] = []
    repairs: set[str] = set()
    for a, b in pairs:
        start, end = to_seconds(a), to_seconds(b)
        if start > end:
            start, end = end, start
            repairs.add("swapped")
        if duration is not None and end > duration:
            end = float(duration)
            start = min(start, end)
            repairs.add("clamped")
        windows.append((start, end))
    return ParseResult(windows, "ok", repairs=frozenset(repairs))


def _pairs_in(region: str) -> list[tuple[str, str]]:
    """All (start, end) tokens in reading order; brackets win where both patterns overlap."""
    found: list[tuple[int, int, str, str]] = [
        (m.start(), m.end(), m.group(1), m.group(2)) for m in _BRACKET.finditer(region)
    ]
    taken = [(s, e) for s, e, _, _ in found]
    for m in _RANGE.finditer(region):
        if not any(m.start() < e and s < m.end() for s, e in taken):
            found.append((m.start(), m.end(), m.group(1), m.group(2)))
    found.sort()
    return [(a, b) for _, _, a, b in found]


_CITED = re.compile(rf"(?<![\w.:])({_CLOCK}|{_NUMBER})(\s*(?:s|sec|secs|second|seconds)\b)?", re.IGNORECASE)


def cited_times(text: str) -> list[float]:
    """Times a reasoning text cites: clock times, numbers with a seconds unit, and the numbers of
    ``[s, e]`` / ``s - e`` pairs. Bare numbers elsewhere ("two people", "3 times") are not times."""
    times: list[float] = []
    for a, b in _pairs_in(text):
        times += [to_seconds(a), to_seconds(b)]
    for match in _CITED.finditer(text):
        token, unit = match.group(1), match.group(2)
        if ":" in token or unit:
            times.append(to_seconds(token))
    return sorted(set(times))
