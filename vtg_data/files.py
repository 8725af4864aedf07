"""Files written whole or not at all, and their hashes.

Every output goes to a temporary sibling first and is renamed into place, so a crash or Ctrl-C
never leaves a half-written file under the final name (a rename within a folder is atomic).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to (``suffix`` for writers that need an extension);
    renamed onto ``path`` when the block ends without an error, deleted otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data: Any, **dumps: Any) -> Path:
    """JSON with a final newline; ``dumps`` options as for ``json.dumps`` (default: indent 2, sorted keys)."""
    options = {"indent": 2, "sort_keys": True, **dumps}
    return write_text(path, json.dumps(data, **options) + "\n")


def copy_file(source: str | Path, dest: str | Path) -> Path:
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    return Path(dest)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
