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
    def id(self) -> str:
        return f"{self.name}@v{self.version}:{self.hash}"

    def user_text(
        self,
        query: str,
        *,
        duration: float | None = None,
        frame_times: Sequence[float] | None = None,
    ) -> str:
        text = self.user.format(query=query)
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
    ) -> list[dict]:
        """Chat messages with a ``{"type": "video"}`` part that the inference backend fills in."""
        return [
            {"role": "system", "content": [{"type": "text", "text": self.system}]},
            {
                "role": "user",
                "content": [
                    {"type": "video"},
                    {
                        "type": "text",
                        "text": self.user_text(query, duration=duration, frame_times=frame_times),
                    },
                ],
            },
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


def get_prompt(name: str) -> PromptTemplate:
    try:
        return PROMPTS[name]
    except KeyError:
        raise ValueError(f"unknown prompt {name!r}; known prompts: {', '.join(sorted(PROMPTS))}") from None
