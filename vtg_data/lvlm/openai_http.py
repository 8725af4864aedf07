"""The OpenAI-compatible HTTP backend: ``vllm serve``, SGLang, hosted APIs (Gemini and others).

Requests run concurrently (bounded) on an asyncio loop in a background thread; responses stream
back as they finish, so a caller can persist each one at once. Transient trouble (429 honouring
``Retry-After``, 5xx, timeouts, dropped connections, malformed bodies) is retried with
exponential backoff and jitter; a request that still fails is returned as ``failed`` with the
reason, and the run goes on. The API key comes from the environment and never appears in messages.

What the model is shown and how it samples are stated in every request, never left to the
server's defaults:

- ``video_mode="frames"`` (default): the client decodes each video once with the same sampling
  plan and frame cache as the other backends and sends the plan's frames as one ``video/jpeg``
  video, told their real rate (``lvlm.served_video``); ``data_url``/``file_url`` upload the whole
  file and leave the frames to the server: its loader samples at the policy's fps, at most
  ``max_frames`` (``media_io_kwargs``), and its processor takes them as sampled, timed by the
  loader's metadata (``do_sample_frames`` false: vLLM 0.32 refuses a request whose processor
  would sample again what its loader already sampled).
- Every sampling field is in the body (temperature, top_p, top_k, min_p, repetition and
  presence/frequency penalties, seed, n): vLLM fills each field a request leaves out from the
  checkpoint's ``generation_config.json`` (Qwen2.5-VL-7B-Instruct: top_k 1, i.e. greedy).
  ``api_fields="standard"`` sends only the fields of OpenAI's own API, for hosts that refuse others.
- The first answers are checked against what the server reports it showed the model
  (``ServerCheck``); a server that dropped or resized frames stops the run with the fix.
- A server that splits the reasoning off (``--reasoning-parser``: ``reasoning_content`` or
  ``reasoning``) has it joined back as ``<think>...</think>`` before the answer.
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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from vtg_data.lvlm.base import (
    BackendIdentity,
    GenerationParams,
    InferenceBackend,
    Request,
    Response,
    video_summary,
)
from vtg_data.lvlm.served_video import (
    FAMILIES,
    OTHER,
    ServerCheck,
    ServerMismatch,
    evenly,
    expectation,
    family_of,
    frame_kwargs,
    jpeg_data_url,
    jpeg_image_urls,
)
from vtg_data.video import DecodeError, FrameCache, load_clips

VIDEO_MODES = ("frames", "images", "data_url", "file_url")
IMAGE_DETAILS = ("auto", "low", "high")
OVER_IMAGE_LIMIT = ("lower", "refuse")
N_MODES = ("param", "repeat")
API_FIELDS = ("full", "standard")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class _Fatal(Exception):
    pass


class _Stopped(Exception):
    """The run stopped (a server mismatch) while this request waited for a slot: nothing sent."""


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
        video_mode: str = "frames",
        n_mode: str = "param",
        family: str | None = None,
        decode_backend: str = "auto",
        frame_cache: FrameCache | None = None,
        decode_timeout: float | None = 120.0,
        jpeg_quality: int = 95,
        check_server: bool = True,
        api_fields: str = "full",
        response_format: dict | None = None,
        extra_body: dict | None = None,
        image_detail: str = "auto",
        max_images: int = 50,
        over_image_limit: str = "lower",
    ):
        if video_mode not in VIDEO_MODES:
            raise ValueError(f"video_mode must be one of {VIDEO_MODES}")
        if image_detail not in IMAGE_DETAILS or over_image_limit not in OVER_IMAGE_LIMIT or max_images < 1:
            raise ValueError(f"image_detail must be one of {IMAGE_DETAILS}, over_image_limit one of "
                             f"{OVER_IMAGE_LIMIT}, max_images >= 1")  # fmt: skip
        if n_mode not in N_MODES:
            raise ValueError(f"n_mode must be one of {N_MODES}")
        if api_fields not in API_FIELDS:
            raise ValueError(f"api_fields must be one of {API_FIELDS}")
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
        self.family = family_of(model, family)
        if self.family == OTHER and video_mode == "frames":
            raise ValueError(
                f"{model}: the frames mode sends vLLM's video input, for Qwen-VL models; a hosted model of "
                "another kind takes the frames as images: --video-mode images"
            )
        self.image_detail, self.max_images, self.over_image_limit = image_detail, max_images, over_image_limit
        self.decode_backend = decode_backend
        self.frame_cache = frame_cache
        self.decode_timeout = decode_timeout
        self.jpeg_quality = jpeg_quality
        self.api_fields = api_fields
        self.response_format = response_format
        self.extra_body = extra_body or {}
        self.check = ServerCheck(self.family) if check_server and video_mode == "frames" else None
        if video_mode == "images":  # said in the manifest: nothing here counts a hosted model's image tokens
            self.unchecked = (
                "images mode: the server's image tokens are not counted (the provider's own tokenizer)"
            )
        elif self.check is None:
            self.unchecked = (
                "server check off" if video_mode == "frames" else f"{video_mode} mode: the server samples"
            )
        else:
            self.unchecked = None
        self._encoded: dict[str, str] = {}
        self._stop: asyncio.Event | None = None
        self._cancelled = threading.Event()  # cancel(): no new requests (a budget reached)
        self.decoded_by: Counter = Counter()
        self._decoding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vtg-data-openai-frames")

    def backend_notes(self) -> dict:
        notes: dict = {"video_mode": self.video_mode, "family": self.family, "api_fields": self.api_fields,
                       "clips_by_decoder": dict(self.decoded_by)}  # fmt: skip
        if self.check is not None:
            notes["server_check"] = {"exact_checks": self.check.verdicts,
                                     "unchecked_reason": self.check.unchecked_reason}  # fmt: skip
        else:
            notes["server_check"] = {"exact_checks": [], "unchecked_reason": self.unchecked}
        if self.video_mode == "images":
            notes["images"] = {"detail": self.image_detail, "max_images": self.max_images,
                               "over_limit": self.over_image_limit}  # fmt: skip
        return notes

    # -----------------------------------------------------------------------------------------
    # Request bodies

    def video_url(self, path: str) -> str:
        """The whole file (``data_url``/``file_url`` modes)."""
        if self.video_mode == "file_url":
            return Path(path).resolve().as_uri()
        if path not in self._encoded:
            if len(self._encoded) >= 4:
                self._encoded.pop(next(iter(self._encoded)))
            data = base64.b64encode(Path(path).read_bytes()).decode()
            self._encoded[path] = f"data:video/mp4;base64,{data}"
        return self._encoded[path]

    def sampling_fields(self, params: GenerationParams, n: int) -> dict[str, Any]:
        """The whole distribution, so no server default fills a field left out."""
        fields: dict[str, Any] = {
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        }
        if self.api_fields == "full":  # vLLM / SGLang sampling fields (-1: top-k off in every version)
            fields.update(
                top_k=params.top_k or -1, min_p=params.min_p, repetition_penalty=params.repetition_penalty
            )
        return fields

    def body(
        self,
        request: Request,
        params: GenerationParams,
        n: int,
        payload: dict | None = None,
        *,
        video: bool = True,
    ) -> dict[str, Any]:
        """The request body; ``payload`` is the frames' data URL and hints (frames mode);
        ``video=False`` drops the video part (the server check's text-only twin)."""
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
                    if video and payload is not None and "images" in payload:
                        for time_s, url in payload["images"]:  # each frame after the time it shows
                            parts.append({"type": "text", "text": f"{time_s:.1f} s"})
                            parts.append(
                                {"type": "image_url", "image_url": {"url": url, "detail": self.image_detail}}
                            )
                    elif video:
                        url = payload["url"] if payload is not None else self.video_url(request.video)
                        parts.append({"type": "video_url", "video_url": {"url": url}})
                elif part["type"] == "text":
                    parts.append({"type": "text", "text": part["text"]})
            if message["role"] == "system":
                messages.append(
                    {"role": "system", "content": " ".join(p["text"] for p in parts if p["type"] == "text")}
                )
            else:
                messages.append({"role": message["role"], "content": parts})
        body: dict[str, Any] = {"model": self.model, "messages": messages, **self.sampling_fields(params, n)}
        if video and request.video is not None and self.api_fields == "full" and self.video_mode != "images":
            if payload is not None:
                body.update(payload["kwargs"])
            else:  # the server's loader samples the file at the policy's rate; its processor keeps them
                body["mm_processor_kwargs"] = {"do_sample_frames": False}
                body["media_io_kwargs"] = {
                    "video": {"fps": request.policy.fps, "num_frames": request.policy.max_frames}
                }
        if self.response_format is not None:
            body["response_format"] = self.response_format
        body.update(self.extra_body)
        return body

    def _payload(self, video: str, policy) -> dict | DecodeError | str:
        """The plan's frames of one video: one ``video/jpeg`` data URL with its hints (frames mode),
        or one JPEG image per frame with its time (images mode; a string says why not)."""
        _, clip = next(iter(load_clips([video], policy, backend=self.decode_backend, cache=self.frame_cache,
                                       timeout=self.decode_timeout)))  # fmt: skip
        if isinstance(clip, DecodeError):
            return clip
        self.decoded_by[clip.backend] += 1
        if self.video_mode == "images":
            planned = clip.num_frames
            keep = list(range(planned))
            if planned > self.max_images:
                if self.over_image_limit == "refuse":
                    return (f"{planned} frames planned, over the provider's limit of {self.max_images} images per "
                            "request (--max-images): lower --fps or --max-frames, or --over-image-limit lower")  # fmt: skip
                keep = evenly(planned, self.max_images)
            urls, size = jpeg_image_urls(clip.frames[keep], self.jpeg_quality)
            times = [float(clip.timestamps[i]) for i in keep]
            summary = video_summary(clip) | {"sent": "images", "bytes": size, "frames": len(keep),
                                             "frames_planned": planned, "first": times[0], "last": times[-1]}  # fmt: skip
            return {
                "images": list(zip(times, urls, strict=True)),
                "kwargs": {},
                "video": summary,
                "expected": None,
            }
        url, size = jpeg_data_url(clip.frames, self.jpeg_quality)
        summary = video_summary(clip) | {"sent": "frames", "bytes": size}
        return {"url": url, "kwargs": frame_kwargs(clip.plan, self.family), "video": summary,
                "expected": expectation(clip.plan, self.family)}  # fmt: skip

    # -----------------------------------------------------------------------------------------
    # Running

    def generate(
        self,
        requests: Sequence[Request],
        params: GenerationParams,
        on_response: Callable[[Response], None] | None = None,
    ) -> Iterator[Response]:
        """Answers as they finish. A ``ServerMismatch`` (the server did not show the model the
        frames sent) is raised after every answer already received has been handed over."""
        results: queue.Queue = queue.Queue()
        done = object()
        failure: list[BaseException] = []

        def runner() -> None:
            try:
                asyncio.run(self._run_all(list(requests), params, results.put))
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)
            finally:
                results.put(done)

        self._cancelled.clear()
        thread = threading.Thread(target=runner, daemon=True)
        thread.start()
        while (item := results.get()) is not done:
            if on_response:
                on_response(item)
            yield item
        thread.join()
        if failure:
            raise failure[0]

    def cancel(self) -> None:
        """Send no more requests (a budget reached); answers in flight still arrive."""
        self._cancelled.set()

    def _groups(self, requests: list[Request]) -> dict[tuple, list[Request]]:
        """Requests by (video, frame policy on this family's grid): one decode serves a group."""
        grid = FAMILIES.get(self.family)
        groups: dict[tuple, list[Request]] = {}
        for request in requests:
            # frames for a Qwen-VL server on its patch grid; images for a hosted model as the policy says
            policy = (replace(request.policy, patch=grid["patch"], frame_multiple=grid["temporal"])
                      if grid is not None and self.video_mode != "images" else request.policy)  # fmt: skip
            groups.setdefault((request.video, policy), []).append(request)
        return groups

    async def _run_all(self, requests: list[Request], params: GenerationParams, put) -> None:
        import httpx

        limit = asyncio.Semaphore(self.concurrency)
        # decoded videos held at once: those whose requests are in flight, and one decoded ahead
        videos = asyncio.Semaphore(self.concurrency + 1)
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        tasks: list[asyncio.Task] = []
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:
            stop = asyncio.Event()  # a server mismatch: decode no more videos, send no more requests
            self._stop = stop

            async def one(request: Request, payload: dict | None, finished) -> None:
                try:
                    put(await self._answer(client, request, params, limit, payload))
                except _Stopped:
                    pass  # never sent: asked again on a rerun
                except ServerMismatch:
                    stop.set()
                    raise
                finally:
                    finished()

            for (video, policy), members in self._groups(requests).items():
                payload = None
                if self.video_mode in ("frames", "images") and video is not None:
                    await videos.acquire()
                    # one decoding thread for the backend's life: its decoder process is reused
                    payload = await asyncio.get_running_loop().run_in_executor(
                        self._decoding, self._payload, video, policy
                    )
                    if isinstance(payload, (DecodeError, str)):
                        videos.release()
                        for request in members:
                            put(Response(request.uid, status="failed", error=str(payload)))
                        continue
                remaining = [len(members)]

                def finished(remaining=remaining, held=payload is not None) -> None:
                    remaining[0] -= 1
                    if remaining[0] == 0 and held:
                        videos.release()

                tasks += [asyncio.create_task(one(request, payload, finished)) for request in members]
                if stop.is_set():
                    break
            await asyncio.gather(*tasks)

    async def _answer(
        self, client, request: Request, params: GenerationParams, limit, payload: dict | None
    ) -> Response:
        start = time.perf_counter()
        shown = payload["video"] if payload is not None else None
        if shown is None and request.video is not None:
            shown = {
                "sent": "file",
                "fps_asked": request.policy.fps,
                "max_frames_asked": request.policy.max_frames,
            }
        try:
            if self.n_mode == "param":
                texts, prompt_tokens, usage = await self._call(
                    client, request, params, params.n, limit, payload
                )
            else:
                texts, prompt_tokens, usage = [], None, Counter()
                for k in range(params.n):
                    one_params = replace(params, n=1, seed=params.seed + k)  # vLLM's seeds for n children
                    more, prompt_tokens, used = await self._call(
                        client, request, one_params, 1, limit, payload
                    )
                    texts += more
                    usage.update(used)
                usage = dict(usage)
        except (_Fatal, OSError) as exc:
            return Response(request.uid, status="failed", error=str(exc), seconds=time.perf_counter() - start)
        if payload is not None and self.check is not None:
            await self._check(client, request, params, limit, payload, prompt_tokens)
        return Response(request.uid, texts, prompt_tokens=prompt_tokens, video=shown, usage=usage or None,
                        seconds=time.perf_counter() - start)  # fmt: skip

    async def _check(self, client, request: Request, params, limit, payload: dict, prompt_tokens) -> None:
        """What the server showed the model: a floor on every answer, an exact count on the first
        of each frame count and size (the same prompt without its video, one token)."""
        expected = payload["expected"]
        self.check.floor(expected, prompt_tokens, request.uid)
        if prompt_tokens is None or not self.check.needs_exact(expected):
            return
        probe = replace(params, n=1, temperature=0.0, max_tokens=1)
        try:
            _, text_tokens, _ = await self._call(client, request, probe, 1, limit, payload, video=False)
        except _Fatal as exc:
            self.check.unchecked_reason = f"the text-only probe failed: {exc}"
            return
        self.check.exact(expected, prompt_tokens, text_tokens, request.uid)

    async def _call(
        self, client, request: Request, params: GenerationParams, n: int, limit, payload=None, *, video=True
    ) -> tuple[list[str], int | None, dict]:
        """One completion call with retries. A slot of ``limit`` is held only while the body is built
        and the request is in flight: a request backing off gives its slot to the next one, so
        faults do not lower the real concurrency."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        last = "no attempt"
        for attempt in range(self.retries + 1):
            try:
                async with limit:  # the body (the encoded video) exists only inside the slot
                    if (self._stop is not None and self._stop.is_set()) or self._cancelled.is_set():
                        raise _Stopped()
                    body = json.dumps(self.body(request, params, n, payload, video=video))
                    response = await client.post(url, content=body)
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

    def _parse(self, response, n: int) -> tuple[list[str], int | None, dict]:
        status = response.status_code
        if status in RETRY_STATUS:
            retry_after = response.headers.get("Retry-After")
            wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            raise _Retry(f"HTTP {status}", wait)
        if status >= 400:
            if status == 400 and refuses_request_kwargs(response.text):
                raise ServerMismatch(
                    f"the server refuses per-request multimodal kwargs (HTTP 400: {error_message(response.text)}). "
                    "The client states each video's frame rate and frame count in mm_processor_kwargs and "
                    "media_io_kwargs (without them vLLM tells the model a video/jpeg frame list is 1 frame per "
                    "second): restart the server with --trust-request-mm-kwargs added to vllm serve"
                )
            raise _Fatal(f"HTTP {status}: {response.text[:300]}")
        try:
            data = response.json()
            texts = [answer_text(choice["message"]) for choice in data["choices"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise _Retry(f"malformed response body ({type(exc).__name__})") from exc
        if len(texts) != n:
            raise _Fatal(f"asked for {n} completions, got {len(texts)} (try n_mode='repeat')")
        usage = data.get("usage") or {}
        # billed tokens (OpenAI counts reasoning inside completion_tokens)
        reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
        billed = {"prompt_tokens": int(usage.get("prompt_tokens") or 0),
                  "output_tokens": int(usage.get("completion_tokens") or 0) - reasoning, "thought_tokens": reasoning}  # fmt: skip
        return texts, usage.get("prompt_tokens"), billed


def error_message(body: str) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message": ...}}``), else the text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300]
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error)[:500]
    return str(error)[:500]


def refuses_request_kwargs(body: str) -> bool:
    """vLLM (0.32 and later) without ``--trust-request-mm-kwargs``: every request carrying
    ``mm_processor_kwargs`` or ``media_io_kwargs`` is refused with this 400."""
    return (
        "--trust-request-mm-kwargs" in body
        or "mm_kwargs are disabled" in body
        or ("kwargs are disabled by default" in body)
    )


def answer_text(message: dict) -> str:
    """The answer as the model wrote it: a reasoning part the server split off (vLLM's
    ``--reasoning-parser``: ``reasoning_content``, or ``reasoning`` in newer versions) is joined
    back as ``<think>...</think>`` before the content, so thinking is parsed and stored."""
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if not reasoning or "<think>" in content:
        return content
    return f"<think>{reasoning.strip()}</think>\n{content.lstrip()}"


__all__ = ["OpenAIBackend", "ServerMismatch", "answer_text"]
