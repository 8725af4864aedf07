"""An OpenAI-compatible chat server on 127.0.0.1 that answers with a real (tiny) model.

Faults are injected per query text: ``server.faults[query] = ["500", "timeout", "malformed",
"drop", "429", "429long"]`` are used up one per request, in order; queries in ``server.broken`` always get
a 500. Every request body is kept in ``server.bodies`` for assertions.
"""

from __future__ import annotations

import base64
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from loopback import LoopbackServer

from vtg_data.lvlm.base import GenerationParams, Request
from vtg_data.video import SamplingPolicy


class ModelServer(LoopbackServer):
    url_path = "/v1"

    def __init__(self, backend, *, slow_seconds: float = 3.0):
        self.backend = backend
        self.faults: dict[str, list[str]] = {}
        self.broken: set[str] = set()
        self.bodies: list[dict] = []
        self.attempts: dict[str, int] = {}
        self.slow_seconds = slow_seconds
        self.lock = threading.Lock()
        self.tmp = tempfile.TemporaryDirectory()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    return self.reply(404, b'{"error": "no such route"}')
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server.bodies.append(body)
                query = server.query_text(body)
                with server.lock:
                    server.attempts[query] = server.attempts.get(query, 0) + 1
                    fault = server.faults[query].pop(0) if server.faults.get(query) else None
                if query in server.broken or fault == "500":
                    return self.reply(500, b'{"error": "boom"}')
                if fault == "400":
                    return self.reply(400, b'{"error": "bad request: unknown field"}')
                if fault == "429":
                    return self.reply(429, b'{"error": "slow down"}', {"Retry-After": "0.1"})
                if fault == "429long":
                    return self.reply(429, b'{"error": "slow down"}', {"Retry-After": "2"})
                if fault == "timeout":
                    time.sleep(server.slow_seconds)
                    return self.reply(200, b"{}")
                if fault == "malformed":
                    return self.reply(200, b'{"choices": [{"mess')
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                answer = server.answer(body)
                return self.reply(200, json.dumps(answer).encode())

            def reply(self, status: int, payload: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        self._listen(Handler)

    @staticmethod
    def query_text(body: dict) -> str:
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        if isinstance(user, str):
            return user
        return " ".join(p["text"] for p in user if p["type"] == "text")

    def answer(self, body: dict) -> dict:
        messages, video = [], None
        for message in body["messages"]:
            if isinstance(message["content"], str):
                messages.append(
                    {"role": message["role"], "content": [{"type": "text", "text": message["content"]}]}
                )
                continue
            parts = []
            for part in message["content"]:
                if part["type"] == "video_url":
                    video = self.materialize(part["video_url"]["url"])
                    parts.append({"type": "video"})
                else:
                    parts.append({"type": "text", "text": part["text"]})
            messages.append({"role": message["role"], "content": parts})
        hints = body.get("mm_processor_kwargs", {})
        policy = SamplingPolicy(fps=hints.get("fps", 1.0), max_frames=8, min_pixels=28 * 28,
                                max_pixels=min(hints.get("max_pixels", 56 * 56), 56 * 56))  # fmt: skip
        params = GenerationParams(
            n=body.get("n", 1), temperature=body.get("temperature", 0.0), max_tokens=body.get("max_tokens", 8)
        )
        with self.lock:
            (response,) = list(self.backend.generate([Request("q", messages, video, policy)], params))
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                for i, t in enumerate(response.texts)
            ],  # fmt: skip
            "usage": {"prompt_tokens": response.prompt_tokens},
        }

    def materialize(self, url: str) -> str:
        if url.startswith("file://"):
            return url[len("file://") :]
        header, data = url.split(",", 1)
        path = Path(self.tmp.name) / f"v{abs(hash(data)) % 10**8}.mp4"
        if not path.exists():
            path.write_bytes(base64.b64decode(data))
        return str(path)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.tmp.cleanup()
