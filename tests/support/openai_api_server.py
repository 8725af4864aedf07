"""A loopback stand-in for a hosted OpenAI-style chat completions API (OpenAI's own), written from
its published REST contract (platform.openai.com/docs/api-reference/chat and the vision guide) and
held to the real ``openai`` client library (tests/lvlm/test_openai_api_server.py):

- ``Authorization: Bearer KEY`` must be the key it was given, else 401 ``invalid_api_key``;
- a request field outside the API (vLLM's ``top_k``, ``min_p``, ``repetition_penalty``,
  ``mm_processor_kwargs`` ...) is a 400 "Unrecognized request argument supplied: NAME";
- content parts ``text`` and ``image_url`` (``url``: a ``data:image/...;base64`` URL, ``detail``
  low | high | auto); a ``video_url`` part is a 400 ``invalid_value``; more than ``max_images``
  images is a 400;
- image tokens as the vision guide counts them for GPT-4o-class models: 85 at ``low``; else the
  image scaled to fit 2048x2048, then its short side to 768, 170 per 512-px tile + 85; text about
  4 characters a token;
- ``usage``: ``prompt_tokens``, ``completion_tokens`` (reasoning included),
  ``completion_tokens_details.reasoning_tokens``, ``total_tokens``;
- faults per query text: ``"429"`` (``rate_limit_exceeded`` with ``retry-after`` and
  ``x-ratelimit-reset-requests`` headers), ``"500"``.
``seen`` records per answered request the images (time label before each, size, detail) and fields.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer

API_FIELDS = {
    "model", "messages", "n", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed", "stop",
    "stream", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs", "response_format", "user",
    "logit_bias", "tools", "tool_choice", "reasoning_effort", "store", "metadata", "service_tier",
    "parallel_tool_calls", "stream_options", "modalities", "prediction", "audio", "web_search_options",
}  # fmt: skip


def image_tokens(width: int, height: int, detail: str) -> int:
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


class OpenAIAPIServer(LoopbackServer):
    url_path = "/v1"

    def __init__(
        self, *, api_key: str = "sk-test", max_images: int = 500, responder=None, retry_after: str = "1"
    ):
        self.api_key, self.max_images, self.responder, self.retry_after = (
            api_key,
            max_images,
            responder,
            retry_after,
        )
        self.faults: dict[str, list[str]] = {}
        self.attempts: dict[str, int] = {}
        self.seen: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def reply(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def error(
                self, status: int, message: str, kind: str, code: str | None = None, param=None, headers=None
            ):
                self.reply(
                    status,
                    {"error": {"message": message, "type": kind, "param": param, "code": code}},
                    headers,
                )

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    shown = f"{given[:3]}***{given[-3:]}" if len(given) > 6 else "***"
                    return self.error(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                                           "https://platform.openai.com/account/api-keys.", "invalid_request_error",
                                      "invalid_api_key")  # fmt: skip
                if self.path != "/v1/chat/completions":
                    return self.error(404, f"Invalid URL (POST {self.path})", "invalid_request_error")
                unknown = sorted(set(body) - API_FIELDS)
                if unknown:
                    return self.error(
                        400, f"Unrecognized request argument supplied: {unknown[0]}", "invalid_request_error"
                    )
                try:
                    answer, headers = server.complete(body)
                except _Refusal as refusal:
                    return self.error(
                        refusal.status,
                        str(refusal),
                        refusal.kind,
                        refusal.code,
                        refusal.param,
                        refusal.headers,
                    )
                return self.reply(200, answer, headers)

        self._listen(Handler)

    def complete(self, body: dict) -> tuple[dict, dict]:
        from PIL import Image

        images, texts, prompt_tokens, label = [], [], 0, None
        for m, message in enumerate(body["messages"]):
            content = message["content"]
            parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for p, part in enumerate(parts):
                kind = part.get("type")
                if kind == "text":
                    texts.append(part["text"])
                    label = part["text"]
                    prompt_tokens += max(1, len(part["text"]) // 4)
                elif kind == "image_url":
                    url, detail = part["image_url"]["url"], part["image_url"].get("detail", "auto")
                    if not url.startswith("data:image/"):
                        raise _Refusal(
                            400,
                            "Invalid image URL: only base64 data URLs are served here.",
                            param=f"messages[{m}].content[{p}].image_url",
                        )
                    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
                    images.append({"label": label, "size": list(image.size), "detail": detail})
                    prompt_tokens += image_tokens(*image.size, detail)
                else:
                    raise _Refusal(400, f"Invalid value: '{kind}'. Supported values are: 'text', 'image_url', "
                                        "'input_audio', 'refusal', 'audio', and 'file'.",
                                   code="invalid_value", param=f"messages[{m}].content[{p}].type")  # fmt: skip
        if len(images) > self.max_images:
            raise _Refusal(400, f"Invalid 'messages': {len(images)} images in one request; at most {self.max_images} are allowed.",
                           param="messages")  # fmt: skip
        query = texts[-1] if texts else ""
        with self.lock:
            self.attempts[query] = self.attempts.get(query, 0) + 1
            fault = self.faults[query].pop(0) if self.faults.get(query) else None
        if fault == "429":
            raise _Refusal(429, "Rate limit reached for requests. Please try again in 1s.", kind="requests",
                           code="rate_limit_exceeded",
                           headers={"retry-after": self.retry_after, "x-ratelimit-reset-requests": f"{self.retry_after}s",
                                    "x-ratelimit-remaining-requests": "0"})  # fmt: skip
        if fault == "500":
            raise _Refusal(500, "The server had an error while processing your request.", kind="server_error")
        record = {
            "images": images,
            "query": query,
            "fields": {k: v for k, v in body.items() if k != "messages"},
        }
        with self.lock:
            self.seen.append(record)
        n = int(body.get("n") or 1)
        texts_out = (self.responder or default_answer)(record, n)
        completion = sum(max(1, len(t) // 4) for t in texts_out)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion,
                 "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}  # fmt: skip
        choices = [{"index": i, "message": {"role": "assistant", "content": t, "refusal": None},
                    "logprobs": None, "finish_reason": "stop"} for i, t in enumerate(texts_out)]  # fmt: skip
        answer = {"id": f"chatcmpl-{len(self.seen)}", "object": "chat.completion", "created": int(time.time()),
                  "model": body["model"], "choices": choices, "usage": usage, "system_fingerprint": "fp_loopback"}  # fmt: skip
        return answer, {"x-ratelimit-remaining-requests": "499"}


class _Refusal(Exception):
    def __init__(self, status, message, *, kind="invalid_request_error", code=None, param=None, headers=None):
        super().__init__(message)
        self.status, self.kind, self.code, self.param, self.headers = status, kind, code, param, headers


def default_answer(record: dict, n: int) -> list[str]:
    """A window between the first and last time labels the images came with."""
    times = [
        float(image["label"].split()[0])
        for image in record["images"]
        if image["label"] and image["label"].endswith(" s")
    ]
    start, end = (times[0], times[-1]) if times else (0.0, 1.0)
    return [f"<time>[{start + i * 0.1:.1f}, {end:.1f}]</time>" for i in range(n)]
