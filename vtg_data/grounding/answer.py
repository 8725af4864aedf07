"""The answer form ``<time>[s, e]</time>``, written in one place beside its parser (``parse``):
cold-start targets, training answers, exports, the scripted and simulated teachers all write it
through ``time_answer``, so the text a model is trained on is the text the parsers read."""

from __future__ import annotations

from collections.abc import Sequence


def fmt(seconds: float) -> str:
    """Seconds as an answer writes them: at most two decimals, no trailing zeros (``12.5``, ``3``)."""
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def window_text(window: Sequence[float]) -> str:
    """``[s, e]``: the JSON pair TVG-R1's strict parser reads."""
    return f"[{fmt(window[0])}, {fmt(window[1])}]"


def time_answer(window: Sequence[float]) -> str:
    """``<time>[s, e]</time>``."""
    return f"<time>{window_text(window)}</time>"
