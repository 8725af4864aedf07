"""Rule-based responders for the scripted backend: a teacher that saw the annotated moment and a
rewriter that shortens a trace. They make the cold-start stage runnable end to end without a model
(the CPU demo) and are recorded as what they are (``scripted:gt-template-teacher``), never as a
model.
"""

from __future__ import annotations

import re

from vtg_data.grounding.answer import fmt, time_answer, window_text  # noqa: F401  (fmt: re-exported)
from vtg_data.grounding.parse import parse_answer
from vtg_data.lvlm.base import GenerationParams, Request
from vtg_data.lvlm.scripted import ScriptedBackend

_GT = re.compile(r"annotated moment is \[([0-9.]+), ([0-9.]+)\]")
_QUERY = re.compile(r"Query: (.*)")
_TRACE = re.compile(r"Answer to rewrite:\n(.*)", re.DOTALL)


def _user_text(request: Request) -> str:
    user = [m for m in request.messages if m["role"] == "user"][-1]["content"]
    return user if isinstance(user, str) else " ".join(p.get("text", "") for p in user if p["type"] == "text")


def gt_template_teacher(request: Request, params: GenerationParams) -> list[str]:
    """Explains the annotated moment given in the prompt; sample i shifts it by i * 0.4 s."""
    text = _user_text(request)
    found = _GT.search(text)
    if found is None:
        raise ValueError(
            "the template teacher needs a prompt that states the annotated moment (--teacher-sees-gt)"
        )
    start, end = float(found.group(1)), float(found.group(2))
    query = _QUERY.search(text).group(1).strip() if _QUERY.search(text) else "the described event"
    traces = []
    for i in range(params.n):
        s, e = max(0.0, start + 0.4 * i), end + 0.4 * i
        before = max(0.0, s - 1.0)
        traces.append(
            f"<think>The query is: {query} Before {fmt(before)}s the scene does not match it. "
            f"At {fmt(s)}s the described event begins, and it continues through the following frames. "
            f"At {fmt(e)}s it ends and the scene changes.</think> {time_answer((s, e))}"
        )
    return traces


def template_rewriter(request: Request, params: GenerationParams) -> list[str]:
    """Shortens a trace to its boundary evidence, keeping the final window as written."""
    found = _TRACE.search(_user_text(request))
    original = found.group(1) if found else ""
    answer = re.search(r"<time>\[([^\]]*)\]</time>", original)
    parsed = parse_answer(original)
    if answer is None or not parsed.windows:
        return ["<think>No answer to keep.</think>"] * params.n
    s, e = parsed.windows[0]
    concise = f"<think>The event starts at {fmt(s)}s and ends at {fmt(e)}s.</think> <time>[{answer.group(1)}]</time>"
    return [concise] * params.n


def template_backend(name: str) -> ScriptedBackend:
    responders = {"gt-template-teacher": gt_template_teacher, "template-rewriter": template_rewriter}
    if name not in responders:
        raise ValueError(f"unknown template {name!r}; choose one of {sorted(responders)}")
    return ScriptedBackend(responders[name], name)
