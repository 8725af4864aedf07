"""Failed rows grouped by reason, for the console and the manifests.

A run over 50K rows that fails 3,000 of them for one reason (a server refusal, a missing video
folder) should say so in one line with the first message, not list 3,000 lines or only a count.
Messages are grouped after the parts that name one row are taken out (file paths, the row's uid).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[^\s:'\"]+)+")
_NUMBER_IN_UID = re.compile(r"\d+")


def reason_of(message: str, uid: str = "") -> str:
    """The message without what belongs to one row: its uid and any file path."""
    text = (message or "failed").strip().splitlines()[0] if message else "failed"
    if uid:
        text = text.replace(uid, "<uid>")
    return _PATH.sub("<file>", text)[:300]


def group_failures(errors: Mapping[str, str]) -> list[dict]:
    """``{uid: message}`` -> one entry per reason, most frequent first: reason, count, and the first
    row's uid and whole message."""
    groups: dict[str, dict] = {}
    for uid, message in errors.items():
        reason = reason_of(message, uid)
        group = groups.get(reason)
        if group is None:
            groups[reason] = {
                "reason": reason,
                "count": 1,
                "first_uid": uid,
                "first_message": message or "failed",
            }
        else:
            group["count"] += 1
    return sorted(groups.values(), key=lambda g: -g["count"])


def failure_lines(groups: list[dict], limit: int = 10) -> list[str]:
    """Console lines: ``count x reason`` and the first message, for the ``limit`` largest groups."""
    lines = []
    for group in groups[:limit]:
        lines.append(f"{group['count']} x {group['reason']}")
        if group["first_message"] != group["reason"]:
            lines.append(f"    first ({group['first_uid']}): {group['first_message'][:500]}")
    if len(groups) > limit:
        lines.append(f"... and {len(groups) - limit} more reasons (manifest)")
    return lines
