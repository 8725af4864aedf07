"""A loopback stand-in for the Gemini Developer API, written from its published REST contract
(ai.google.dev/api: ``models.generateContent``, the Files API's resumable upload, ``files.get``,
``files.delete``, ``files.list``; error bodies of google.rpc.Status with ``RetryInfo``) and held to
the real ``google-genai`` client (tests/lvlm/test_gemini_server.py drives it with the SDK).

What it does as the service does:
- ``x-goog-api-key`` must be the key it was given (else 400 INVALID_ARGUMENT "API key not valid");
- ``generateContent``: ``contents`` with ``text``, ``inlineData`` and ``fileData`` parts (camelCase or
  snake_case fields, as the SDK mixes them) and ``videoMetadata`` (``fps``, default 1,
  ``startOffset``/``endOffset`` like ``"1.5s"``); ``systemInstruction``; ``generationConfig``
  (``candidateCount``, ``maxOutputTokens``, ``temperature``, ``topP``, ``topK``, ``seed``,
  ``mediaResolution``, ``thinkingConfig`` with ``includeThoughts``/``thinkingBudget``);
- a request body over ``max_request_bytes`` (20 MiB, the documented inline limit) is a 400;
- a ``fileData`` URI must name an uploaded file in state ACTIVE (uploads start PROCESSING and turn
  ACTIVE after ``processing_polls`` reads), else 400 FAILED_PRECONDITION;
- token counts as documented: a video frame is 258 tokens (66 at ``MEDIA_RESOLUTION_LOW``),
  frames = seconds x fps of the requested span; text about 4 characters a token; usage in
  ``usageMetadata`` (``promptTokenCount``, ``candidatesTokenCount``, ``thoughtsTokenCount``,
  ``totalTokenCount``);
- thoughts come back as parts with ``"thought": true`` only when ``includeThoughts`` is set;
  ``MAX_TOKENS`` cuts the answer; blocked answers are candidates without content and a
  ``finishReason`` of ``SAFETY``/``RECITATION``, a blocked prompt is ``promptFeedback.blockReason``.

Faults per query text (``faults[query] = [...]``): ``"429"`` (RESOURCE_EXHAUSTED with a RetryInfo
``retryDelay`` of ``retry_delay``), ``"503"`` (UNAVAILABLE), ``"safety"``, ``"recitation"``,
``"prompt_blocked"``, ``"max_tokens"``; ``upload_faults`` (a list) makes the next uploads' byte
transfer stop halfway (the connection closed without an answer).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlparse

from loopback import LoopbackServer

TOKENS_PER_FRAME = {"MEDIA_RESOLUTION_LOW": 66, "MEDIA_RESOLUTION_MEDIUM": 258, "MEDIA_RESOLUTION_HIGH": 258}
DEFAULT_FRAME_TOKENS = 258
ROUTE = re.compile(r"^/(?P<version>v1beta|v1|v1alpha)/models/(?P<model>[^:]+):generateContent$")


class ApiError(Exception):
    def __init__(self, code: int, status: str, message: str, details: list | None = None):
        super().__init__(message)
        self.code, self.status, self.details = code, status, details or []

    def body(self) -> dict:
        error = {"code": self.code, "message": str(self), "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def field(part: dict, camel: str):
    """A field by its JSON (camelCase) or proto (snake_case) name."""
    snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)
    return part.get(camel, part.get(snake))


def seconds(value) -> float | None:
    """A protobuf Duration in JSON (``"1.5s"``) as seconds."""
    if value is None:
        return None
    return float(str(value).rstrip("s"))


def media_seconds(data: bytes) -> float:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as file:
        file.write(data)
        file.flush()
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", file.name],
                             capture_output=True, text=True, check=True)  # fmt: skip
    return float(out.stdout.strip())


class GeminiServer(LoopbackServer):
    def __init__(self, *, api_key: str = "test-key", responder=None, max_request_bytes: int = 20 * 2**20,
                 processing_polls: int = 1, retry_delay: str = "1s"):  # fmt: skip
        self.api_key = api_key
        self.responder = responder
        self.max_request_bytes = max_request_bytes
        self.processing_polls = processing_polls
        self.retry_delay = retry_delay
        self.files: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.faults: dict[str, list[str]] = {}
        self.upload_faults: list[str] = []
        self.seen: list[dict] = []  # one per generateContent answered: what the model was given
        self.attempts: dict[str, int] = {}
        self.uploads_started = 0
        self.deleted: list[str] = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def reply(self, status: int, payload: dict | None, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def authorised(self) -> bool:
                if self.headers.get("x-goog-api-key") == server.api_key:
                    return True
                error = ApiError(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
                self.reply(400, error.body())
                return False

            def do_POST(self) -> None:
                path = urlparse(self.path).path
                if path.startswith("/upload-session/"):
                    return server.upload_bytes(self, path.rsplit("/", 1)[1])
                raw = self.body()
                if not self.authorised():
                    return None
                try:
                    if re.match(r"^/upload/(v1beta|v1|v1alpha)/files$", path):
                        return server.start_upload(self, raw)
                    match = ROUTE.match(path)
                    if not match:
                        raise ApiError(404, "NOT_FOUND", f"no route {path}")
                    if len(raw) > server.max_request_bytes:
                        raise ApiError(400, "INVALID_ARGUMENT",
                                       f"Request payload size exceeds the limit: {server.max_request_bytes} bytes.")  # fmt: skip
                    return self.reply(200, server.generate(match["model"], json.loads(raw)))
                except ApiError as error:
                    return self.reply(error.code, error.body())
                except Exception as error:  # the service's 500: a bug here shows as an answer, not a hang
                    return self.reply(
                        500, ApiError(500, "INTERNAL", f"{type(error).__name__}: {error}").body()
                    )

            def do_GET(self) -> None:
                if not self.authorised():
                    return None
                path = urlparse(self.path).path
                try:
                    if re.match(r"^/(v1beta|v1|v1alpha)/files$", path):
                        return self.reply(200, {"files": [server.public(f) for f in server.files.values()]})
                    return self.reply(200, server.get_file(path.rsplit("/", 1)[1], poll=True))
                except ApiError as error:
                    return self.reply(error.code, error.body())

            def do_DELETE(self) -> None:
                if not self.authorised():
                    return None
                name = urlparse(self.path).path.rsplit("/", 1)[1]
                with server.lock:
                    found = server.files.pop(name, None)
                if found is None:
                    error = ApiError(403, "PERMISSION_DENIED", f"You do not have permission to access the File {name} or it may not exist.")  # fmt: skip
                    return self.reply(403, error.body())
                server.deleted.append(name)
                return self.reply(200, {})

        self._listen(Handler)

    # ------------------------------------------------------------------------------------------
    # Files

    def public(self, record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in ("bytes", "polls")}

    def start_upload(self, handler, raw: bytes) -> None:
        if (
            handler.headers.get("X-Goog-Upload-Protocol") != "resumable"
            or handler.headers.get("X-Goog-Upload-Command") != "start"
        ):
            raise ApiError(400, "INVALID_ARGUMENT", "only resumable uploads are supported here")
        meta = json.loads(raw or b"{}").get("file", {})
        session = f"s{next(self._ids)}"
        with self.lock:
            self.uploads_started += 1
            self.sessions[session] = {
                "size": int(handler.headers.get("X-Goog-Upload-Header-Content-Length") or 0),
                "mime": handler.headers.get("X-Goog-Upload-Header-Content-Type") or field(meta, "mimeType"),
                "display": field(meta, "displayName"),
                "data": b"",
            }
        host, port = self.httpd.server_address[:2]
        handler.reply(200, None, {"X-Goog-Upload-URL": f"http://{host}:{port}/upload-session/{session}",
                                  "X-Goog-Upload-Status": "active"})  # fmt: skip

    def upload_bytes(self, handler, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            return handler.reply(404, ApiError(404, "NOT_FOUND", "upload session not found").body())
        length = int(handler.headers.get("Content-Length") or 0)
        with self.lock:
            fault = self.upload_faults.pop(0) if self.upload_faults else None
        if fault == "drop":  # half the bytes arrive, then the connection goes
            handler.rfile.read(length // 2)
            handler.close_connection = True
            handler.connection.shutdown(2)
            return None
        session["data"] += handler.rfile.read(length)
        command = handler.headers.get("X-Goog-Upload-Command", "")
        if "finalize" not in command:
            return handler.reply(200, None, {"X-Goog-Upload-Status": "active"})
        if len(session["data"]) != session["size"]:
            return handler.reply(400, ApiError(400, "INVALID_ARGUMENT", "upload size mismatch").body(),
                                 {"X-Goog-Upload-Status": "final"})  # fmt: skip
        name = hashlib.sha1(session["data"] + session_id.encode()).hexdigest()[:12]
        host, port = self.httpd.server_address[:2]
        record = {"name": f"files/{name}", "displayName": session["display"], "mimeType": session["mime"],
                  "sizeBytes": str(len(session["data"])), "uri": f"http://{host}:{port}/v1beta/files/{name}",
                  "state": "PROCESSING", "expirationTime": "2099-01-01T00:00:00Z",
                  "bytes": session["data"], "polls": 0}  # fmt: skip
        with self.lock:
            self.files[name] = record
            self.sessions.pop(session_id, None)
        handler.reply(200, {"file": self.public(record)}, {"X-Goog-Upload-Status": "final"})

    def get_file(self, name: str, poll: bool = False) -> dict:
        with self.lock:
            record = self.files.get(name)
            if record is None:
                raise ApiError(403, "PERMISSION_DENIED", f"You do not have permission to access the File {name} or it may not exist.")  # fmt: skip
            if poll:
                record["polls"] += 1
                if record["polls"] >= self.processing_polls:
                    record["state"] = "ACTIVE"
            return self.public(record)

    # ------------------------------------------------------------------------------------------
    # generateContent

    def media(self, part: dict) -> tuple[bytes, str] | None:
        inline = field(part, "inlineData")
        if inline is not None:
            # the JSON mapping of bytes is base64; the SDK writes its URL-safe alphabet, both are taken
            return base64.urlsafe_b64decode(inline["data"].replace("+", "-").replace("/", "_")), "inline"
        file_data = field(part, "fileData")
        if file_data is not None:
            uri = field(file_data, "fileUri")
            name = uri.rstrip("/").rsplit("/", 1)[1]
            with self.lock:
                record = self.files.get(name)
            if record is None:
                raise ApiError(403, "PERMISSION_DENIED", f"You do not have permission to access the File {name} or it may not exist.")  # fmt: skip
            if record["state"] != "ACTIVE":
                raise ApiError(400, "FAILED_PRECONDITION", f"The File {name} is not in an ACTIVE state and usage is not allowed.")  # fmt: skip
            return record["bytes"], "file"
        return None

    def generate(self, model: str, body: dict) -> dict:
        config = body.get("generationConfig") or {}
        thinking = field(config, "thinkingConfig") or {}
        resolution = field(config, "mediaResolution")
        texts, videos, prompt_tokens = [], [], 0
        system = body.get("systemInstruction") or {}
        for text in (part.get("text", "") for part in system.get("parts", [])):
            prompt_tokens += max(1, len(text) // 4)
        for content in body.get("contents", []):
            for part in content.get("parts", []):
                if "text" in part:
                    texts.append(part["text"])
                    prompt_tokens += max(1, len(part["text"]) // 4)
                    continue
                found = self.media(part)
                if found is None:
                    continue
                data, source = found
                meta = field(part, "videoMetadata") or {}
                fps = float(meta.get("fps") or 1.0)
                length = media_seconds(data)
                start = seconds(field(meta, "startOffset")) or 0.0
                end = min(seconds(field(meta, "endOffset")) or length, length)
                frames = max(1, int((end - start) * fps))
                prompt_tokens += frames * TOKENS_PER_FRAME.get(resolution, DEFAULT_FRAME_TOKENS)
                videos.append({"source": source, "bytes": len(data), "fps": fps, "start": start, "end": end,
                               "frames": frames, "seconds": length})  # fmt: skip
        query = texts[-1] if texts else ""
        with self.lock:
            self.attempts[query] = self.attempts.get(query, 0) + 1
            fault = self.faults[query].pop(0) if self.faults.get(query) else None
        if fault == "429":
            raise ApiError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).",
                           [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": self.retry_delay}])  # fmt: skip
        if fault == "503":
            raise ApiError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        usage = {"promptTokenCount": prompt_tokens}
        record = {
            "model": model,
            "query": query,
            "videos": videos,
            "config": config,
            "media_resolution": resolution,
        }
        with self.lock:
            self.seen.append(record)
        if fault == "prompt_blocked":
            return {
                "promptFeedback": {"blockReason": "SAFETY"},
                "usageMetadata": usage | {"totalTokenCount": prompt_tokens},
            }
        n = int(field(config, "candidateCount") or 1)
        max_tokens = int(field(config, "maxOutputTokens") or 8192)
        include = bool(field(thinking, "includeThoughts"))
        seed = int(config.get("seed") or 0)
        candidates, out_tokens, thought_tokens = [], 0, 0
        for index in range(n):
            thought, answer = (self.responder or default_answer)(record, seed + index)
            reason = "STOP"
            if fault in ("safety", "recitation"):
                candidates.append({"index": index, "finishReason": fault.upper(),
                                   "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]})  # fmt: skip
                continue
            if fault == "max_tokens" or len(answer) // 4 > max_tokens:
                answer, reason = answer[: max(1, min(max_tokens * 4, len(answer) // 2))], "MAX_TOKENS"
            parts = ([{"text": thought, "thought": True}] if include and thought else []) + [{"text": answer}]
            thought_tokens += len(thought) // 4 if thought else 0
            out_tokens += max(1, len(answer) // 4)
            candidates.append(
                {"index": index, "content": {"role": "model", "parts": parts}, "finishReason": reason}
            )
        usage |= {"candidatesTokenCount": out_tokens, "thoughtsTokenCount": thought_tokens,
                  "totalTokenCount": prompt_tokens + out_tokens + thought_tokens}  # fmt: skip
        return {"candidates": candidates, "usageMetadata": usage, "modelVersion": model,
                "responseId": f"r{next(self._ids)}"}  # fmt: skip


def default_answer(record: dict, seed: int) -> tuple[str, str]:
    """A reasoning and an answer that depend on what was shown and on the seed."""
    video = record["videos"][0] if record["videos"] else {"seconds": 10.0, "frames": 0}
    length = video.get("end", video["seconds"]) - video.get("start", 0.0)
    start = round((seed % 5) / 10 * length, 1)
    end = round(min(length, start + length / 3), 1)
    thought = f"I watched {video['frames']} frames over {length:.1f} s; the moment is near {start} s."
    return thought, f"<time>[{start}, {end}]</time>"
