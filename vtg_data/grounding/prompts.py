"""Versioned prompt templates. Every output records the template's name and hash, so a changed
word invalidates exactly the cached model calls and results that used it.

Templates put the instruction in the system turn and the video then the query in the user turn
(the same placement in training and evaluation; TVG-R1 evaluated with a different one). Options
state the video's duration and the times of the sampled frames in the text, for models that do
not read timing from the video encoding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

REASONING_TOKENS = 2048
ANSWER_TOKENS = 256


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    system: str
    user: str  # formatted with {query}; duration and frame times are appended when asked
    answer_style: str  # the reward's answer style: think_time, time, think_answer
    parse_mode: str = "tolerant"

    @property
    def hash(self) -> str:
        payload = json.dumps(
            [self.name, self.version, self.system, self.user, self.answer_style, self.parse_mode],
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def answer_budget(self) -> int:
        """New tokens an answer needs by default: room for the reasoning when the prompt asks to
        think first (TVG-R1 evaluates its think prompt with up to 2,048), a short answer otherwise."""
        return REASONING_TOKENS if self.answer_style.startswith("think") else ANSWER_TOKENS

    @property
    def id(self) -> str:
        return f"{self.name}@v{self.version}:{self.hash}"

    def user_text(
        self,
        query: str,
        *,
        duration: float | None = None,
        frame_times: Sequence[float] | None = None,
        **fields: object,
    ) -> str:
        text = self.user.format(query=query, **fields)
        notes = []
        if duration is not None:
            notes.append(f"The video is {duration:.1f} seconds long.")
        if frame_times is not None:
            notes.append(
                "The frames shown are at " + ", ".join(f"{t:.1f}" for t in frame_times) + " seconds."
            )
        return " ".join([*notes, text]) if notes else text

    def messages(
        self,
        query: str,
        *,
        duration: float | None = None,
        frame_times: Sequence[float] | None = None,
        video: bool = True,
        **fields: object,
    ) -> list[dict]:
        """Chat messages with a ``{"type": "video"}`` part that the inference backend fills in
        (``video=False`` for text-only requests such as rewriting)."""
        text = {
            "type": "text",
            "text": self.user_text(query, duration=duration, frame_times=frame_times, **fields),
        }
        return [
            {"role": "system", "content": [{"type": "text", "text": self.system}]},
            {"role": "user", "content": [{"type": "video"}, text] if video else [text]},
        ]


_TVG_R1_SYSTEM = (
    "You FIRST think about the reasoning process in the mind and finally determine the precise time period "
    "related to the query. The reasoning process MUST BE enclosed within <think> </think> tags. The specific "
    "time period MUST BE in the format [start time, end time] in seconds enclosed within <time> </time> tags. "
    "For example, <think>the reasoning process</think> <time>[5.2, 10.4]</time>"
)

PROMPTS: dict[str, PromptTemplate] = {
    template.name: template
    for template in (
        PromptTemplate("tvg_r1_think", 1, _TVG_R1_SYSTEM, "{query}", "think_time", parse_mode="strict"),
        PromptTemplate(
            "time_only",
            1,
            "Find the moment in the video that the query describes. Answer only with the time period "
            "in the format <time>[start time, end time]</time>, in seconds, for example <time>[5.2, 10.4]</time>.",
            "Query: {query}",
            "time",
        ),
        # No system turn and a one-line instruction: for small models trained from scratch.
        PromptTemplate("compact", 1, "", "{query} Answer as <time>[start, end]</time> in seconds.", "time"),
        PromptTemplate(
            "compact_think",
            1,
            "",
            "{query} Think briefly, then answer as <time>[start, end]</time> in seconds.",
            "think_time",
        ),
        # TVG-R1's multiple-choice items (its ``tvg`` score): reasoning, the moment, then the letter boxed
        PromptTemplate(
            "tvg_r1_choice",
            1,
            "Answer the multiple-choice question about the video. First think inside <think> </think> tags, then "
            "give the moment that supports the answer as <time>[start time, end time]</time> in seconds, then "
            "the letter of the correct option as \\boxed{X}, for example <think>...</think> "
            "<time>[5.2, 10.4]</time> \\boxed{B}.",
            "{query}",
            "think_time",
        ),
        PromptTemplate(
            "think_answer",
            1,
            "Find the moment in the video that the query describes. Think first, inside <think> </think> tags, "
            "then give the start and end in seconds inside <answer> </answer> tags, for example "
            "<think>the reasoning</think> <answer>5.2 to 10.4</answer>.",
            "Query: {query}",
            "think_answer",
        ),
    )
}


_TEACHER_SYSTEM = (
    "You are annotating a video temporal grounding dataset. Watch the video and find the moment the query "
    "describes. First reason step by step inside <think> </think> tags, citing the times (in seconds, e.g. "
    "12.5s) of what you see that marks where the moment starts and ends. Then give the moment as "
    "<time>[start time, end time]</time> in seconds, for example <time>[5.2, 10.4]</time>. Write nothing after "
    "the </time> tag."
)

TEACHER_PROMPTS: dict[str, PromptTemplate] = {
    template.name: template
    for template in (
        PromptTemplate("coldstart_teacher", 1, _TEACHER_SYSTEM, "Query: {query}", "think_time"),
        # The teacher is shown the annotated moment and explains it; the run records that it saw it.
        PromptTemplate(
            "coldstart_teacher_gt",
            1,
            _TEACHER_SYSTEM,
            "Query: {query}\nThe annotated moment is [{gt_start:.1f}, {gt_end:.1f}] seconds. Explain, from what the "
            "video shows, where it starts and ends, and give your own final answer.",
            "think_time",
        ),
        PromptTemplate(
            "coldstart_rewrite",
            1,
            "Rewrite the reasoning of a video grounding answer so it is concise and cites explicit timestamps in "
            "seconds. Keep the same conclusion: the final <time>[start, end]</time> must stay exactly as it is. "
            "Answer in the format <think>...</think> <time>[start, end]</time> and nothing else.",
            "Query: {query}\nAnswer to rewrite:\n{trace}",
            "think_time",
        ),
    )
}


def get_prompt(name: str) -> PromptTemplate:
    known = PROMPTS | TEACHER_PROMPTS
    try:
        return known[name]
    except KeyError:
        raise ValueError(f"unknown prompt {name!r}; known prompts: {', '.join(sorted(known))}") from None
