"""Downloads that survive interruptions, and archive extraction that cannot escape its target.

- ``download_url``: streams to ``<dest>.part``, resumes it with an HTTP Range request, retries
  connection errors and 5xx/429 with backoff, verifies the SHA-256 when known and only then renames
  the file into place. A checksum mismatch deletes the partial file and leaves no final file.
- ``extract_archive``: zip and tar (any compression, and tar archives split into ``.00``/``.01``
  parts) into a staging folder, then renamed into place. Every entry is checked first: absolute
  paths, ``..`` components, links pointing outside and device files are refused.

Tokens for Hugging Face mirrors come from ``HF_TOKEN`` or the login file and are never printed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20
RETRY_STATUS = {429, 500, 502, 503, 504}


class FetchError(RuntimeError):
    """A download or extraction that could not complete; the message names the URL or file."""


class UnsafeArchiveError(FetchError):
    pass


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


def sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Archives


def _safe_name(name: str, archive: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: entry {name!r} has an absolute path; refusing to extract")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: entry {name!r} escapes the target folder; refusing to extract")
    return path


class _ConcatReader:
    """A read-only stream over several files in order (tar archives split into parts)."""

    def __init__(self, paths: list[Path]):
        self._paths = list(paths)
        self._handle = None

    def read(self, size: int = -1) -> bytes:
        chunks = []
        while size != 0:
            if self._handle is None:
                if not self._paths:
                    break
                self._handle = self._paths.pop(0).open("rb")
            block = self._handle.read(size if size > 0 else CHUNK)
            if not block:
                self._handle.close()
                self._handle = None
                continue
            chunks.append(block)
            if size > 0:
                size -= len(block)
        return b"".join(chunks)

    def close(self) -> None:
        if self._handle:
            self._handle.close()


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")) or ".tar.gz." in name


def extract_archive(
    parts: Path | list[Path], target: Path, *, wanted: Callable[[PurePosixPath], bool] | None = None
) -> list[Path]:
    """Extract a zip or tar (possibly split into parts) into ``target``; returns the files written.

    Entries are written into a staging folder inside ``target`` and renamed into place only after
    the whole archive was read, so an unsafe or truncated archive leaves nothing behind.
    """
    paths = [parts] if isinstance(parts, Path) else list(parts)
    label = paths[0].name
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".extract-{os.getpid()}-{paths[0].name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    written: list[PurePosixPath] = []
    try:
        if zipfile.is_zipfile(paths[0]) and len(paths) == 1:
            written = _extract_zip(paths[0], staging, wanted)
        else:
            written = _extract_tar(paths, staging, wanted, label)
        final = []
        for rel in written:
            destination = target / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).replace(destination)
            final.append(destination)
        return final
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise FetchError(f"{label}: archive is corrupt or truncated: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_zip(path: Path, staging: Path, wanted) -> list[PurePosixPath]:
    written = []
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        for info in infos:  # check every entry before writing any
            _safe_name(info.filename, path.name)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise UnsafeArchiveError(f"{path.name}: entry {info.filename!r} is a symbolic link; refusing")
        for info in infos:
            rel = _safe_name(info.filename, path.name)
            if info.is_dir() or (wanted and not wanted(rel)):
                continue
            out = staging / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, out.open("wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK)
            written.append(rel)
    return written


def _extract_tar(paths: list[Path], staging: Path, wanted, label: str) -> list[PurePosixPath]:
    written = []
    stream = _ConcatReader(paths)
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as archive:
            for member in archive:
                rel = _safe_name(member.name, label)
                if member.issym() or member.islnk():
                    link = PurePosixPath(member.linkname)
                    if link.is_absolute() or ".." in link.parts:
                        raise UnsafeArchiveError(
                            f"{label}: entry {member.name!r} links outside the target ({member.linkname!r}); refusing"
                        )
                    continue  # in-archive links are not needed for annotation or video files
                if member.isdev() or member.isfifo():
                    raise UnsafeArchiveError(f"{label}: entry {member.name!r} is a device or fifo; refusing")
                if not member.isfile() or (wanted and not wanted(rel)):
                    continue
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                with out.open("wb") as sink:
                    shutil.copyfileobj(source, sink, CHUNK)
                written.append(rel)
    finally:
        stream.close()
    return written


def find_member(names: Iterable[PurePosixPath], member: str) -> PurePosixPath | None:
    """An archive entry matching ``member`` by full path, else by base name."""
    names = list(names)
    wanted = PurePosixPath(member)
    for name in names:
        if name == wanted:
            return name
    for name in names:
        if name.name == wanted.name:
            return name
    return None
