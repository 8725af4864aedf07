"""Gemini through the ``google-genai`` SDK: the teacher TVG-R1's cold start was written by.

What is sent and kept:
- The video as Gemini takes it: the file's bytes inline when the request stays under
  ``inline_mib`` (the documented 20 MB request limit), else uploaded once through the Files API
  (resumable upload, then polled until ACTIVE), reused by every request on it and by later runs
  (``upload_cache``, until 47 h of the service's 48 h have passed), and deleted when the backend is
  closed unless ``keep_uploads``. An upload that breaks is started again.
- ``video_metadata.fps``: the policy's rate, lowered so that the video gives at most the policy's
  ``max_frames`` frames. Gemini samples the frames itself at that rate and stamps each with its time;
  what was asked (fps, frames expected) is recorded per answer (``Response.video``), since what the
  model saw is not returned.
- ``media_resolution`` (low | medium | high; Gemini's default otherwise) and the thinking budget;
  the thoughts the model returns (``include_thoughts``) are kept before the answer as
  ``<think>...</think>``, as the other backends keep a reasoning.
- Every sampling field stated: temperature, top_p, top_k (when on), seed, max output tokens,
  ``candidate_count = n`` (``n_mode="repeat"``: n calls seeded seed + i, for models that refuse
  several candidates).
- ``usage_metadata`` per answer (prompt, answer and thought tokens), for cost accounting.
- A blocked answer (SAFETY, RECITATION, ...), a blocked prompt and an answer cut at the token limit
  are failures named by their reason, never texts. 429/5xx are retried after the service's
  ``RetryInfo`` delay (else exponential backoff). The API key comes from ``GEMINI_API_KEY`` or
  ``GOOGLE_API_KEY`` (or the argument) and is never written to a message, a manifest or a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from vtg_data.lvlm.base import BackendIdentity, GenerationParams, InferenceBackend, Request, Response

RESOLUTIONS = ("low", "medium", "high")
N_MODES = ("param", "repeat")
RETRY_CODES = {408, 429, 500, 502, 503, 504}
BLOCKED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "LANGUAGE",
    "OTHER",
}
UPLOAD_REUSE_SECONDS = 47 * 3600  # uploaded files live 48 h
MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
        ".mov": "video/quicktime", ".mpeg": "video/mpeg", ".mpg": "video/mpeg", ".wmv": "video/x-ms-wmv",
        ".flv": "video/x-flv", ".3gp": "video/3gpp"}  # fmt: skip


class _Failed(Exception):
    """A request that cannot be answered; the message names why."""


class _Cancelled(Exception):
    """Not sent: the run was cancelled (a budget reached) before this call."""


def api_key_from_env() -> str:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        if os.environ.get(name):
            return os.environ[name]
    raise ValueError("the gemini backend needs an API key: set GEMINI_API_KEY (or GOOGLE_API_KEY)")


def retry_delay(error) -> float | None:
    """The service's ``RetryInfo.retryDelay`` (``"7s"``) of an API error, in seconds."""
    details = getattr(error, "details", None) or {}
    body = details.get("error", details) if isinstance(details, dict) else {}
    for detail in body.get("details", []) if isinstance(body, dict) else []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            try:
                return float(str(detail.get("retryDelay", "")).rstrip("s"))
            except ValueError:
                return None
    return None


class GeminiBackend(InferenceBackend):
    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        concurrency: int = 4,
        timeout: float = 600.0,
        retries: int = 5,
        backoff: float = 2.0,
        max_backoff: float = 120.0,
        inline_mib: float = 20.0,
        media_resolution: str | None = None,
        thinking_budget: int | None = None,
        include_thoughts: bool = True,
        n_mode: str = "param",
        upload_cache: str | Path | None = None,
        keep_uploads: bool = False,
        poll_seconds: float = 2.0,
    ):
        if media_resolution is not None and media_resolution not in RESOLUTIONS:
            raise ValueError(f"media_resolution must be one of {RESOLUTIONS}")
        if n_mode not in N_MODES:
            raise ValueError(f"n_mode must be one of {N_MODES}")
        try:
            from google import genai
            from google.genai import types
        except ImportError as error:
            raise ImportError("the gemini backend needs google-genai: pip install 'vtg-data[api]'") from error
        self._genai, self.types = genai, types
        self._api_key = api_key or api_key_from_env()
        self.base_url = base_url
        self.model = model
        self.identity = BackendIdentity("gemini", model, "")
        self.concurrency, self.timeout, self.retries = concurrency, timeout, retries
        self.backoff, self.max_backoff = backoff, max_backoff
        self.inline_bytes = int(inline_mib * 2**20)
        self.media_resolution, self.thinking_budget, self.include_thoughts = (
            media_resolution,
            thinking_budget,
            include_thoughts,
        )
        self.n_mode = n_mode
        self.upload_cache = Path(upload_cache) if upload_cache else None
        self.keep_uploads = keep_uploads
        self.poll_seconds = poll_seconds
        self.uploads: dict[str, dict] = self._read_upload_cache()
        self._checked: set[str] = set()  # uploads known ACTIVE in this process
        self._cancelled = threading.Event()
        self.counts: Counter = Counter()  # inline, uploaded, upload_reused, upload_retried
        self.model_versions: Counter = Counter()

    # ------------------------------------------------------------------------------------------

    def _client(self):
        options = {"timeout": int(self.timeout * 1000)}
        if self.base_url:
            options["base_url"] = self.base_url
        return self._genai.Client(api_key=self._api_key, http_options=self.types.HttpOptions(**options))

    def backend_notes(self) -> dict:
        return {
            "video": f"inline up to {self.inline_bytes / 2**20:g} MiB per request, else the Files API",
            "timestamps": "Gemini samples the frames at the fps asked and stamps them itself; "
            "each answer records the fps asked and the frames expected",
            "media_resolution": self.media_resolution or "the model's default",
            "thinking_budget": self.thinking_budget,
            "include_thoughts": self.include_thoughts,
            "n_mode": self.n_mode,
            "videos": dict(self.counts),
            "model_versions": dict(self.model_versions),
        }

    def _read_upload_cache(self) -> dict[str, dict]:
        if self.upload_cache is None or not self.upload_cache.is_file():
            return {}
        try:
            return json.loads(self.upload_cache.read_text())
        except ValueError:
            return {}

    def _write_upload_cache(self) -> None:
        if self.upload_cache is not None:
            self.upload_cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.upload_cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.uploads, indent=1))
            tmp.replace(self.upload_cache)

    # ------------------------------------------------------------------------------------------
    # What is sent

    def frame_rate(self, request: Request) -> tuple[float, float]:
        """The fps asked of Gemini (the policy's, lowered to keep at most ``max_frames`` frames) and
        the video's length."""
        from vtg_data.video import stream_info

        duration = stream_info(request.video).duration
        fps = request.policy.fps
        if duration * fps > request.policy.max_frames:
            fps = request.policy.max_frames / duration
        return round(fps, 4), duration

    async def video_part(self, client, request: Request, lock: asyncio.Lock):
        types = self.types
        path = Path(request.video)
        if not path.is_file():
            raise _Failed(f"video not found: {path}")
        fps, duration = self.frame_rate(request)
        mime = MIME.get(path.suffix.lower(), "video/mp4")
        metadata = types.VideoMetadata(fps=fps)
        size = path.stat().st_size
        shown = {
            "sent": "inline",
            "fps_asked": fps,
            "frames_expected": max(1, int(duration * fps)),
            "bytes": size,
        }
        if 4 * (size + 2) // 3 + 64 * 1024 <= self.inline_bytes:
            self.counts["inline"] += 1
            return types.Part(
                inline_data=types.Blob(data=path.read_bytes(), mime_type=mime), video_metadata=metadata
            ), shown
        async with lock:  # one upload per file, however many requests wait for it
            uri = await self.uploaded_uri(client, path, mime)
        return types.Part(
            file_data=types.FileData(file_uri=uri, mime_type=mime), video_metadata=metadata
        ), shown | {"sent": "file"}

    async def uploaded_uri(self, client, path: Path, mime: str) -> str:
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        cached = self.uploads.get(key)
        if cached and key in self._checked:  # uploaded or checked by this backend already
            return cached["uri"]
        if cached and time.time() - cached["uploaded_at"] < UPLOAD_REUSE_SECONDS:
            try:
                found = await client.aio.files.get(name=cached["name"])
                if found.state == self.types.FileState.ACTIVE:
                    self.counts["upload_reused"] += 1
                    self._checked.add(key)
                    return found.uri
            except self._genai.errors.APIError:
                pass  # expired or deleted elsewhere: upload again
        last = None
        for attempt in range(self.retries + 1):
            try:
                uploaded = await client.aio.files.upload(
                    file=str(path), config={"mime_type": mime, "display_name": path.name}
                )
                break
            except Exception as error:  # a transfer broken halfway: start the upload again
                last = error
                self.counts["upload_retried"] += 1
                await asyncio.sleep(min(self.max_backoff, self.backoff * 2**attempt))
        else:
            raise _Failed(
                f"upload of {path.name} failed {self.retries + 1} times: {type(last).__name__}: {last}"
            )
        while uploaded.state == self.types.FileState.PROCESSING:
            await asyncio.sleep(self.poll_seconds)
            uploaded = await client.aio.files.get(name=uploaded.name)
        if uploaded.state != self.types.FileState.ACTIVE:
            raise _Failed(f"upload of {path.name} ended in state {uploaded.state}")
        self.counts["uploaded"] += 1
        self.uploads[key] = {"name": uploaded.name, "uri": uploaded.uri, "uploaded_at": time.time()}
        self._checked.add(key)
        self._write_upload_cache()
        return uploaded.uri

    def contents(self, request: Request, video_part) -> tuple[list, str | None]:
        types = self.types
        system, contents = [], []
        for message in request.messages:
            content = message["content"]
            parts_in = [{"type": "text", "text": content}] if isinstance(content, str) else content
            if message["role"] == "system":
                system += [p["text"] for p in parts_in if p["type"] == "text"]
                continue
            parts = []
            for part in parts_in:
                if part["type"] == "video":
                    if video_part is None:
                        raise _Failed("the messages have a video part but the request has no video")
                    parts.append(video_part)
                elif part["type"] == "text":
                    parts.append(types.Part(text=part["text"]))
            contents.append(
                types.Content(role="model" if message["role"] == "assistant" else "user", parts=parts)
            )
        return contents, "\n".join(system) or None

    def config(self, params: GenerationParams, n: int, system: str | None):
        types = self.types
        thinking = types.ThinkingConfig(
            include_thoughts=self.include_thoughts, thinking_budget=self.thinking_budget
        )
        options: dict[str, Any] = {
            "temperature": params.temperature, "top_p": params.top_p, "max_output_tokens": params.max_tokens,
            "seed": params.seed, "candidate_count": n, "thinking_config": thinking, "system_instruction": system,
        }  # fmt: skip
        if params.top_k:
            options["top_k"] = params.top_k
        if self.media_resolution:
            options["media_resolution"] = getattr(
                types.MediaResolution, f"MEDIA_RESOLUTION_{self.media_resolution.upper()}"
            )
        return types.GenerateContentConfig(**options)

    # ------------------------------------------------------------------------------------------
    # Answers

    def read(self, answer, n: int) -> tuple[list[str], dict]:
        """Texts (thoughts joined back before the answer) and usage; a blocked or cut answer fails."""
        feedback = getattr(answer, "prompt_feedback", None)
        if feedback is not None and feedback.block_reason:
            raise _Failed(f"gemini: prompt blocked ({_name(feedback.block_reason)})")
        texts = []
        for candidate in answer.candidates or []:
            reason = _name(candidate.finish_reason) if candidate.finish_reason else "STOP"
            if reason in BLOCKED:
                raise _Failed(f"gemini: answer blocked ({reason})")
            if reason == "MAX_TOKENS":
                raise _Failed("gemini: answer cut at the output token limit (MAX_TOKENS)")
            parts = (candidate.content.parts if candidate.content else None) or []
            thought = "".join(p.text or "" for p in parts if getattr(p, "thought", False)).strip()
            text = "".join(p.text or "" for p in parts if not getattr(p, "thought", False))
            texts.append(
                f"<think>{thought}</think>\n{text.lstrip()}" if thought and "<think>" not in text else text
            )
        if len(texts) != n:
            raise _Failed(f"gemini: asked for {n} candidates, got {len(texts)} (try n_mode='repeat')")
        meta = answer.usage_metadata
        usage = {
            "prompt_tokens": getattr(meta, "prompt_token_count", None) or 0,
            "output_tokens": getattr(meta, "candidates_token_count", None) or 0,
            "thought_tokens": getattr(meta, "thoughts_token_count", None) or 0,
        }
        if getattr(answer, "model_version", None):
            self.model_versions[answer.model_version] += 1
        return texts, usage

    async def call(
        self, client, request: Request, params: GenerationParams, n: int, contents, system, limit
    ) -> tuple[list[str], dict]:
        last = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                async with limit:
                    if self._cancelled.is_set():
                        raise _Cancelled()
                    answer = await client.aio.models.generate_content(
                        model=self.model, contents=contents, config=self.config(params, n, system)
                    )
                return self.read(answer, n)
            except self._genai.errors.APIError as error:
                code = getattr(error, "code", None)
                last = f"HTTP {code} {getattr(error, 'status', '')}: {getattr(error, 'message', '')}".strip()
                if code not in RETRY_CODES:
                    raise _Failed(last) from None
                wait = retry_delay(error)
            except (OSError, asyncio.TimeoutError) as error:
                last, wait = f"connection error: {type(error).__name__}", None
            except Exception as error:  # httpx transport errors come from the SDK's client
                if "Transport" not in type(error).__name__ and "Timeout" not in type(error).__name__:
                    raise
                last, wait = f"connection error: {type(error).__name__}", None
            if attempt < self.retries:
                delay = wait if wait is not None else min(self.max_backoff, self.backoff * 2**attempt)
                await asyncio.sleep(delay + random.uniform(0, self.backoff / 4))
        raise _Failed(f"gave up after {self.retries + 1} attempts: {last}")

    async def answer(self, client, request: Request, params: GenerationParams, limit, locks) -> Response:
        start = time.perf_counter()
        try:
            part, shown = (None, None)
            if request.video is not None:
                lock = locks.setdefault(str(request.video), asyncio.Lock())
                part, shown = await self.video_part(client, request, lock)
            contents, system = self.contents(request, part)
            if self.n_mode == "param" or params.n == 1:
                texts, usage = await self.call(client, request, params, params.n, contents, system, limit)
            else:
                texts, usage = [], Counter()
                for k in range(params.n):
                    more, used = await self.call(client, request, replace(params, n=1, seed=params.seed + k), 1,
                                                 contents, system, limit)  # fmt: skip
                    texts += more
                    usage.update(used)
                usage = dict(usage)
        except _Failed as error:
            return Response(
                request.uid,
                status="failed",
                error=self._scrub(str(error)),
                seconds=time.perf_counter() - start,
            )
        return Response(request.uid, texts, prompt_tokens=usage["prompt_tokens"], video=shown, usage=usage,
                        seconds=time.perf_counter() - start)  # fmt: skip

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def generate(
        self,
        requests: Sequence[Request],
        params: GenerationParams,
        on_response: Callable[[Response], None] | None = None,
    ) -> Iterator[Response]:
        results: queue.Queue = queue.Queue()
        done = object()
        failure: list[BaseException] = []

        async def run_all() -> None:
            client = self._client()
            limit = asyncio.Semaphore(self.concurrency)
            locks: dict[str, asyncio.Lock] = {}

            async def one(request: Request) -> None:
                with contextlib.suppress(_Cancelled):  # never sent: asked again on a rerun
                    results.put(await self.answer(client, request, params, limit, locks))

            await asyncio.gather(*(one(r) for r in requests))

        def runner() -> None:
            try:
                asyncio.run(run_all())
            except BaseException as error:
                failure.append(error)
            finally:
                results.put(done)

        self._cancelled.clear()
        thread = threading.Thread(target=runner, daemon=True, name="vtg-data-gemini")
        thread.start()
        while (item := results.get()) is not done:
            yield self._emit(item, on_response)
        thread.join()
        if failure:
            raise failure[0]

    def cancel(self) -> None:
        """Send no more calls (a budget reached); answers in flight still arrive."""
        self._cancelled.set()

    def close(self) -> None:
        """Delete the files this backend uploaded (unless ``keep_uploads``)."""
        if not self.keep_uploads and self.uploads:
            client = self._client()
            for key, entry in list(self.uploads.items()):
                with contextlib.suppress(self._genai.errors.APIError):  # already gone
                    client.files.delete(name=entry["name"])
                self.uploads.pop(key)
            self._write_upload_cache()
        super().close()


def _name(value) -> str:
    return getattr(value, "name", None) or str(value)


__all__ = ["GeminiBackend", "retry_delay"]
