"""Downloads that survive interruptions.

``download_url`` streams to ``<dest>.part``, resumes it with an HTTP Range request, retries
connection errors and 5xx/429 with backoff, verifies the SHA-256 when known and only then renames
the file into place. A checksum mismatch deletes the partial file and leaves no final file.

Tokens for Hugging Face mirrors come from ``HF_TOKEN`` or the login file and are never printed.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from vtg_data.files import sha256_file

CHUNK = 1 << 20
RETRY_STATUS = {429, 500, 502, 503, 504}


class FetchError(RuntimeError):
    """A download or extraction that could not complete; the message names the URL or file."""


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hf_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    token_file = home / "token"
    return token_file.read_text().strip() if token_file.is_file() else None


def _headers(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": "vtg-data"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def redact(url: str) -> str:
    """URLs can carry signed query strings; never echo those."""
    return url.split("?", 1)[0]


def download_url(
    url: str,
    dest: Path,
    *,
    sha256: str | tuple[str, ...] | None = None,
    retries: int = 4,
    timeout: float = 60.0,
    backoff: float = 1.0,
    token: str | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part`` if present); returns ``dest``.

    ``token`` is sent as a bearer token to this URL only (Hugging Face mirrors); it never appears
    in messages. ``sha256`` is the expected sum, or several accepted ones (one file re-serialized
    by different mirrors).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            _fetch_into(url, part, timeout, token, on_progress)
            break
        except _Retryable as exc:
            attempt += 1
            if attempt > retries:
                raise FetchError(f"{redact(url)}: giving up after {retries} retries: {exc}") from exc
            time.sleep(backoff * 2 ** (attempt - 1))
    accepted = (sha256,) if isinstance(sha256, str) else tuple(sha256 or ())
    if accepted:
        actual = sha256_path(part)
        if actual not in accepted:
            part.unlink(missing_ok=True)
            raise FetchError(
                f"{redact(url)}: checksum mismatch for {dest.name}: expected sha256 {' or '.join(accepted)}, "
                f"got {actual}; "
                "the download was deleted"
            )
    part.replace(dest)
    return dest


class _Retryable(Exception):
    pass


def _fetch_into(url: str, part: Path, timeout: float, token: str | None, on_progress) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = _headers(token)
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the partial file is complete
            return
        if exc.code in RETRY_STATUS:
            raise _Retryable(f"HTTP {exc.code}") from exc
        raise FetchError(f"{redact(url)}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):  # an unknown host does not come back by retrying
            raise FetchError(f"{redact(url)}: cannot resolve host: {exc.reason}") from exc
        raise _Retryable(str(exc)) from exc
    except (TimeoutError, ConnectionError, OSError) as exc:
        raise _Retryable(str(exc)) from exc
    with response:
        if have and response.status == 206:
            mode, offset = "ab", have
        else:
            mode, offset = "wb", 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = offset
        try:
            with part.open(mode) as handle:
                while block := response.read(CHUNK):
                    handle.write(block)
                    received += len(block)
                    if on_progress:
                        on_progress(received, total)
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise _Retryable(f"connection lost after {received} bytes: {exc}") from exc
        if total is not None and received < total:
            raise _Retryable(f"connection closed after {received} of {total} bytes")


sha256_path = sha256_file  # the name this module has always exported
