"""A backend whose answers come from a Python function: rule-based teachers, the CPU demo, tests.

``ScriptedBackend(responder)`` calls ``responder(request, params) -> list[str]`` for each request
(n texts). It goes through the same interface, caching and provenance as a model, so a pipeline
cannot tell it apart; its identity names the responder so outputs say what wrote them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from vtg_data.lvlm.base import BackendIdentity, GenerationParams, InferenceBackend, Request, Response

Responder = Callable[[Request, GenerationParams], list[str]]


class ScriptedBackend(InferenceBackend):
    decode_backend = None

    def __init__(self, responder: Responder, name: str, revision: str = "1"):
        self.responder = responder
        self.identity = BackendIdentity("scripted", name, revision)
        self.calls = 0

    def generate(
        self,
        requests: Sequence[Request],
        params: GenerationParams,
        on_response: Callable[[Response], None] | None = None,
    ) -> Iterator[Response]:
        for request in requests:
            start = time.perf_counter()
            self.calls += 1
            try:
                texts = list(self.responder(request, params))
                response = Response(request.uid, texts, seconds=time.perf_counter() - start)
            except Exception as exc:  # a responder error fails this request only
                response = Response(request.uid, status="failed", error=f"{type(exc).__name__}: {exc}")
            yield self._emit(response, on_response)
