"""One interface for every way of asking a vision-language model about a video.

A ``Request`` is chat messages (with a ``{"type": "video"}`` part), the video file and the
sampling policy for its frames. ``GenerationParams`` say how to sample text: the whole
distribution (temperature, top_p, top_k, min_p, repetition penalty), so that no backend inherits
a field from a checkpoint's or a server's defaults, plus n, max tokens and seed. A backend answers each request with a ``Response``: n texts, or a
failure with its reason (a failure is never turned into text or a score). ``identity`` (backend,
model id, revision) goes into every output's provenance.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from vtg_data.video.sampling import SamplingPolicy


@dataclass(frozen=True)
class GenerationParams:
    n: int = 1
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0
    top_k: int = 0  # 0: off (every token)
    min_p: float = 0.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("need temperature >= 0 and 0 < top_p <= 1")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if self.top_k < 0 or not 0 <= self.min_p < 1 or not self.repetition_penalty > 0:
            raise ValueError("need top_k >= 0 (0 = off), 0 <= min_p < 1 and repetition_penalty > 0")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Request:
    uid: str
    messages: list[dict]
    video: str | None = None
    policy: SamplingPolicy = field(default_factory=SamplingPolicy)

    def key(self, params: GenerationParams, identity: BackendIdentity) -> str:
        """Hash of everything that determines the answer: a cache key that a change invalidates."""
        payload = {
            "uid": self.uid,
            "messages": self.messages,
            "video": self.video,
            "policy": asdict(self.policy),
            "params": asdict(params),
            "model": asdict(identity),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class BackendIdentity:
    backend: str
    model: str
    revision: str = ""


@dataclass
class Response:
    uid: str
    texts: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok" or "failed"
    error: str | None = None
    prompt_tokens: int | None = None
    video: dict[str, Any] | None = None  # what the model was shown: frames, fps, first/last time, size
    seconds: float | None = None
    usage: dict[str, int] | None = (
        None  # tokens a hosted API billed: prompt_tokens, output_tokens, thought_tokens
    )

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class InferenceBackend(ABC):
    identity: BackendIdentity

    @abstractmethod
    def generate(
        self,
        requests: Sequence[Request],
        params: GenerationParams,
        on_response: Callable[[Response], None] | None = None,
    ) -> Iterator[Response]:
        """Yield one response per request (in any order); never raise for one bad request."""

    closed: bool = False

    @staticmethod
    def _emit(response: Response, on_response: Callable[[Response], None] | None) -> Response:
        """Hand a response to the caller's callback (e.g. to persist it) before yielding it."""
        if on_response:
            on_response(response)
        return response

    def close(self) -> None:
        """Release models, clients or engines; subclasses free what they hold."""
        self.closed = True

    def backend_notes(self) -> dict[str, Any]:
        """What the backend knows about its sampling beyond ``GenerationParams``: defaults it
        overrode (a checkpoint's generation config) or checked (a server). Recorded in manifests."""
        return {}


def backend_notes(backend) -> dict[str, Any]:
    """A backend's ``backend_notes()``, or nothing for an object that only speaks ``generate``."""
    notes = getattr(backend, "backend_notes", None)
    return notes() if callable(notes) else {}


def video_summary(clip) -> dict[str, Any]:
    return {
        "frames": clip.num_frames,
        "fps": clip.fps,
        "first": float(clip.timestamps[0]),
        "last": float(clip.timestamps[-1]),
        "width": clip.plan.width,
        "height": clip.plan.height,
        "decoder": clip.backend,
    }
