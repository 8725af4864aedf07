"""The OpenAI-compatible HTTP backend: ``vllm serve``, SGLang, hosted APIs (Gemini and others).

Requests run concurrently (bounded) on an asyncio loop in a background thread; responses stream
back as they finish, so a caller can persist each one at once. Transient trouble (429 honouring
``Retry-After``, 5xx, timeouts, dropped connections, malformed bodies) is retried with
exponential backoff and jitter; a request that still fails is returned as ``failed`` with the
reason, and the run goes on. The video goes as a base64 data URL (default) or a ``file://`` URL
(for a server that reads the same disk), with fps and pixel hints for servers that take them.
The API key comes from the environment and never appears in messages.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from vtg_data.lvlm.base import BackendIdentity, GenerationParams, InferenceBackend, Request, Response

VIDEO_MODES = ("data_url", "file_url")
N_MODES = ("param", "repeat")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class _Fatal(Exception):
    pass


class OpenAIBackend(InferenceBackend):
    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        revision: str = "",
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        video_mode: str = "data_url",
        n_mode: str = "param",
        fps_hints: bool = True,
        response_format: dict | None = None,
        extra_body: dict | None = None,
    ):
        if video_mode not in VIDEO_MODES:
            raise ValueError(f"video_mode must be one of {VIDEO_MODES}")
        if n_mode not in N_MODES:
            raise ValueError(f"n_mode must be one of {N_MODES}")
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1").rstrip(
            "/"
        )
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.model = model
        self.identity = BackendIdentity("openai", model, revision)
        self.concurrency = concurrency
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.video_mode = video_mode
        self.n_mode = n_mode
        self.fps_hints = fps_hints
        self.response_format = response_format
        self.extra_body = extra_body or {}
        self._encoded: dict[str, str] = {}

    # -----------------------------------------------------------------------------------------
    # Request bodies

    def video_url(self, path: str) -> str:
        if self.video_mode == "file_url":
            return Path(path).resolve().as_uri()
        if path not in self._encoded:
            if len(self._encoded) >= 4:
                self._encoded.pop(next(iter(self._encoded)))
            data = base64.b64encode(Path(path).read_bytes()).decode()
            self._encoded[path] = f"data:video/mp4;base64,{data}"
        return self._encoded[path]

    def body(self, request: Request, params: GenerationParams, n: int) -> dict[str, Any]:
        messages = []
        for message in request.messages:
            content = message["content"]
            if isinstance(content, str):
                messages.append({"role": message["role"], "content": content})
                continue
            parts = []
            for part in content:
                if part["type"] == "video":
                    if request.video is None:
                        raise _Fatal("the messages have a video part but the request has no video")
                    parts.append({"type": "video_url", "video_url": {"url": self.video_url(request.video)}})
                elif part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
            if message["role"] == "system":
                messages.append(
                    {"role": "system", "content": " ".join(p["text"] for p in parts if p["type"] == "text")}
                )
            else:
                messages.append({"role": message["role"], "content": parts})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
        }
        if self.fps_hints and request.video is not None:
            policy = request.policy
            body["mm_processor_kwargs"] = {
                "fps": policy.fps,
                "min_pixels": policy.min_pixels,
                "max_pixels": policy.max_pixels,
            }
            body["media_io_kwargs"] = {"video": {"fps": policy.fps}}
        if self.response_format is not None:
            body["response_format"] = self.response_format
        body.update(self.extra_body)
        return body

    # -----------------------------------------------------------------------------------------
    # Running

    def generate(
        self,
        requests: Sequence[Request],
        params: GenerationParams,
        on_response: Callable[[Response], None] | None = None,
    ) -> Iterator[Response]:
        results: queue.Queue = queue.Queue()
        done = object()

        def runner() -> None:
            try:
                asyncio.run(self._run_all(list(requests), params, results.put))
            finally:
                results.put(done)

        thread = threading.Thread(target=runner, daemon=True)
        thread.start()
        while (item := results.get()) is not done:
            if on_response:
                on_response(item)
            yield item
        thread.join()

    async def _run_all(self, requests: list[Request], params: GenerationParams, put) -> None:
        import httpx

        limit = asyncio.Semaphore(self.concurrency)
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:

            async def one(request: Request) -> None:
                put(await self._answer(client, request, params, limit))

            await asyncio.gather(*(one(r) for r in requests))

    async def _answer(self, client, request: Request, params: GenerationParams, limit) -> Response:
        start = time.perf_counter()
        try:
            if self.n_mode == "param":
                texts, prompt_tokens = await self._call(client, request, params, params.n, limit)
            else:
                texts, prompt_tokens = [], None
                for k in range(params.n):
                    one_params = GenerationParams(
                        1, params.temperature, params.top_p, params.max_tokens, params.seed + k
                    )
                    more, prompt_tokens = await self._call(client, request, one_params, 1, limit)
                    texts += more
        except (_Fatal, OSError) as exc:
            return Response(request.uid, status="failed", error=str(exc), seconds=time.perf_counter() - start)
        return Response(request.uid, texts, prompt_tokens=prompt_tokens, seconds=time.perf_counter() - start)

    async def _call(
        self, client, request: Request, params: GenerationParams, n: int, limit
    ) -> tuple[list[str], int | None]:
        """One completion call with retries. A slot of ``limit`` is held only while the body is built
        and the request is in flight: a request backing off gives its slot to the next one, so
        faults do not lower the real concurrency."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        last = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                async with limit:  # the body (the encoded video) exists only inside the slot
                    response = await client.post(url, content=json.dumps(self.body(request, params, n)))
                return self._parse(response, n)
            except _Retry as exc:
                last, wait = str(exc), exc.wait
            except httpx.TimeoutException:
                last, wait = f"timed out after {self.timeout:.0f} s", None
            except httpx.TransportError as exc:
                last, wait = f"connection error: {type(exc).__name__}", None
            if attempt < self.retries:
                delay = wait if wait is not None else min(self.max_backoff, self.backoff * 2**attempt)
                await asyncio.sleep(delay + random.uniform(0, self.backoff / 2))
        raise _Fatal(f"gave up after {self.retries + 1} attempts: {last}")

    def _parse(self, response, n: int) -> tuple[list[str], int | None]:
        status = response.status_code
        if status in RETRY_STATUS:
            retry_after = response.headers.get("Retry-After")
            wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            raise _Retry(f"HTTP {status}", wait)
        if status >= 400:
            raise _Fatal(f"HTTP {status}: {response.text[:300]}")
        try:
            data = response.json()
            texts = [choice["message"]["content"] or "" for choice in data["choices"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise _Retry(f"malformed response body ({type(exc).__name__})") from exc
        if len(texts) != n:
            raise _Fatal(f"asked for {n} completions, got {len(texts)} (try n_mode='repeat')")
        usage = data.get("usage") or {}
        return texts, usage.get("prompt_tokens")
