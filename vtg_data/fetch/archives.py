"""Archive extraction that cannot escape its target.

``extract_archive``: zip and tar (any compression, and tar archives split into ``.00``/``.01``
parts) into a staging folder, then renamed into place. Every entry is checked first: absolute
paths, ``..`` components, links pointing outside and device files are refused.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

from vtg_data.fetch.http import CHUNK, FetchError


class UnsafeArchiveError(FetchError):
    pass


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
