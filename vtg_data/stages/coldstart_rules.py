"""The cold-start filter rules: each a named check with its parameter, applied in order.

A rule looks at one teacher trace of one sample and returns a ``Verdict`` (pass or fail, a reason
and the measured value). The stage counts, per rule, how many traces were still in and how many it
rejected, so the funnel explains every dropped trace. The checks are pure functions of the trace,
the sample and the options, so a rerun decides exactly the same.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vtg_data.grounding.metrics import iou
from vtg_data.grounding.parse import cited_times, parse_answer
from vtg_data.grounding.rewards import format_reward
from vtg_data.leakage import query_key, video_key

RULE_ORDER = (
    "encoding",
    "format",
    "parse",
    "range",
    "iou",
    "length_chars",
    "length_tokens",
    "span",
    "consistency",
    "dedup",
    "leakage",
)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<(time|answer)>(.*?)</\1>", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class RuleOptions:
    """Thresholds of the rules (defaults follow TVG-R1 and its re-filtering by Open-o3-Video)."""

    iou_min: float = 0.5
    min_chars: int = 40
    max_chars: int = 6000
    min_tokens: int = 8
    max_tokens: int = 1500
    max_span: float = 0.7
    consistency_tolerance: float = 1.0  # seconds, or 5% of the duration if that is larger
    range_tolerance: float = 0.5  # seconds an answer may reach past the video (or before 0); clamped
    dedup_threshold: float = 0.9  # word-set Jaccard similarity of two queries on one video
    parse_mode: str = "tolerant"

    def __post_init__(self) -> None:
        if not 0 <= self.iou_min <= 1 or not 0 < self.max_span <= 1 or not 0 < self.dedup_threshold <= 1:
            raise ValueError("iou_min, max_span and dedup_threshold are fractions in [0, 1]")
        if self.min_chars > self.max_chars or self.min_tokens > self.max_tokens:
            raise ValueError("length bounds: min must not exceed max")


@dataclass
class Trace:
    uid: str
    index: int
    text: str
    origin: str  # "import:<file>" or the teacher's id
    window: tuple[float, float] | None = None  # clamped to the video by the range rule
    raw_window: tuple[float, float] | None = None  # as the teacher wrote it
    iou: float | None = None
    verdicts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    value: Any = None


@dataclass
class RuleContext:
    options: RuleOptions
    count_tokens: Callable[[str], int]
    bench_videos: set[str] = field(default_factory=set)
    accepted_queries: dict[str, list[tuple[str, set[str]]]] = field(
        default_factory=dict
    )  # video -> (uid, words)


def check_encoding(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    if "\ufffd" in trace.text:
        return Verdict(False, "text has bytes that are not UTF-8")
    if _CONTROL.search(trace.text):
        return Verdict(False, "text has control characters")
    return Verdict(True)


def check_format(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    if not trace.text.strip():
        return Verdict(False, "empty output")
    if format_reward(trace.text, "think_time") or format_reward(trace.text, "think_answer"):
        return Verdict(True)
    thinks, answers = len(_THINK.findall(trace.text)), len(_ANSWER.findall(trace.text))
    return Verdict(False, f"needs exactly one <think> block then one answer block and nothing else "
                          f"(found {thinks} think, {answers} answer)")  # fmt: skip


def check_parse(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    """One window, as written: never clamped here (the range rule judges what lies outside)."""
    answer = _ANSWER.search(trace.text)
    block = answer.group(0) if answer else trace.text
    parsed = parse_answer(block, None, ctx.options.parse_mode)
    if not parsed.ok:
        return Verdict(False, f"answer does not parse: {parsed.reason}")
    if len(parsed.windows) != 1:
        return Verdict(False, f"answer has {len(parsed.windows)} windows, not one")
    trace.raw_window = trace.window = parsed.windows[0]
    return Verdict(True, value=list(trace.window))


def check_range(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    """The answer lies in the video: past its end (or before 0) by more than the tolerance is
    rejected; within it, the window is clamped, and the SFT text will say the clamped window."""
    start, end = trace.raw_window
    duration, tolerance = sample["duration"], ctx.options.range_tolerance
    if end > duration + tolerance:
        return Verdict(False, f"the answer [{start:g}, {end:g}] ends {end - duration:.2f}s past the video's end "
                              f"({duration:g}s)", [start, end])  # fmt: skip
    if start < -tolerance:
        return Verdict(False, f"the answer [{start:g}, {end:g}] starts before the video", [start, end])
    clamped = (min(max(start, 0.0), duration), min(max(end, 0.0), duration))
    trace.window = clamped
    return Verdict(True, "clamped into the video" if clamped != (start, end) else "", list(clamped))


def check_iou(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    value = max(iou(trace.window, gt) for gt in sample["windows"])
    trace.iou = value
    if value < ctx.options.iou_min:
        return Verdict(False, f"IoU {value:.3f} with the ground truth is below {ctx.options.iou_min}", value)
    return Verdict(True, value=value)


def check_length_chars(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    n, o = len(trace.text), ctx.options
    if not o.min_chars <= n <= o.max_chars:
        return Verdict(False, f"{n} characters, outside [{o.min_chars}, {o.max_chars}]", n)
    return Verdict(True, value=n)


def check_length_tokens(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    n, o = ctx.count_tokens(trace.text), ctx.options
    if not o.min_tokens <= n <= o.max_tokens:
        return Verdict(False, f"{n} tokens, outside [{o.min_tokens}, {o.max_tokens}]", n)
    return Verdict(True, value=n)


def check_span(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    ratio = (trace.window[1] - trace.window[0]) / sample["duration"]
    if ratio > ctx.options.max_span:
        return Verdict(
            False, f"answer spans {ratio:.1%} of the video (max {ctx.options.max_span:.0%})", ratio
        )
    return Verdict(True, value=ratio)


def check_consistency(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    """The reasoning cites times inside the video, and the final boundaries are among them."""
    think = _THINK.search(trace.text)
    times = cited_times(think.group(1)) if think else []
    duration = sample["duration"]
    tolerance = max(ctx.options.consistency_tolerance, 0.05 * duration)
    if not times:
        return Verdict(False, "the reasoning cites no timestamps")
    outside = [t for t in times if t > duration + tolerance]
    if outside:
        return Verdict(
            False, f"the reasoning cites {outside[0]:g}s, past the video's end ({duration:g}s)", times
        )
    for boundary, name in ((trace.window[0], "start"), (trace.window[1], "end")):
        if min(abs(boundary - t) for t in times) > tolerance:
            return Verdict(False, f"the final {name} {boundary:g}s is not supported by any cited time", times)
    return Verdict(True, value=times)


def check_dedup(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    words = set(query_key(sample["query"]).split())
    for other_uid, other in ctx.accepted_queries.get(sample["video_id"], []):
        if other_uid == trace.uid:
            continue
        similarity = len(words & other) / max(1, len(words | other))
        if similarity >= ctx.options.dedup_threshold:
            return Verdict(
                False,
                f"query is a near-duplicate ({similarity:.2f}) of {other_uid} on the same video",
                similarity,
            )
    return Verdict(True)


def check_leakage(trace: Trace, sample: dict, ctx: RuleContext) -> Verdict:
    tags = sample.get("benchmarks") or []
    if len(tags):
        return Verdict(False, f"the sample is a benchmark item ({', '.join(tags)})")
    key = video_key(sample["video_id"], sample.get("parent_video_id"))
    if key in ctx.bench_videos:
        return Verdict(False, f"video {key} is in a benchmark table")
    return Verdict(True)


RULES: dict[str, Callable[[Trace, dict, RuleContext], Verdict]] = {
    "encoding": check_encoding,
    "format": check_format,
    "parse": check_parse,
    "range": check_range,
    "iou": check_iou,
    "length_chars": check_length_chars,
    "length_tokens": check_length_tokens,
    "span": check_span,
    "consistency": check_consistency,
    "dedup": check_dedup,
    "leakage": check_leakage,
}
# Rules that need the parsed window run only after ``parse``; disabling ``parse`` disables them.
NEEDS_WINDOW = {"range", "iou", "span", "consistency"}


def apply_rules(trace: Trace, sample: dict, rules: list[str], ctx: RuleContext) -> str | None:
    """Run the rules in order; returns the name of the first that rejects, or None."""
    for name in rules:
        if name in NEEDS_WINDOW and trace.window is None:
            parsed = check_parse(trace, sample, ctx)  # the window is needed even if parse is off
            if not parsed.ok:
                trace.verdicts[name] = {"ok": False, "reason": parsed.reason}
                return name
        verdict = RULES[name](trace, sample, ctx)
        trace.verdicts[name] = {"ok": verdict.ok, "reason": verdict.reason, "value": verdict.value}
        if not verdict.ok:
            return name
    return None
