"""Pieces every model-calling stage shares: the call cache, uid sharding, manifests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from vtg_data.files import write_json
from vtg_data.lvlm import GenerationParams, InferenceBackend, Request, Response


def shard_of(uid: str, shards: int) -> int:
    """Shard of a sample: a hash of its uid, never its position or the worker's rank."""
    return int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) % shards


class CallCache:
    """Answers by request key in a JSONL file, appended (and fsynced) as each arrives."""

    def __init__(self, path: Path):
        self.path = path
        self.answers: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
                if record.get("status") == "ok":
                    self.answers[record["key"]] = record

    def run(self, backend: InferenceBackend, requests: list[Request], params: GenerationParams, progress=None,
            label: str = "") -> dict[str, dict]:  # fmt: skip
        """The answer of every request (``{"status": "failed", ...}`` for failures); asks only the
        backend for the ones not cached."""
        keys = {r.uid: r.key(params, backend.identity) for r in requests}
        todo = [r for r in requests if keys[r.uid] not in self.answers]
        task = progress.add_task(label, total=len(todo)) if progress and todo else None
        failures: dict[str, dict] = {}
        if todo:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as sink:

                def persist(response: Response) -> None:
                    record = {"uid": response.uid, "key": keys[response.uid], "status": response.status,
                              "texts": response.texts, "error": response.error}  # fmt: skip
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
                    os.fsync(sink.fileno())
                    if response.ok:
                        self.answers[record["key"]] = record
                    else:
                        failures[response.uid] = record
                    if task is not None:
                        progress.advance(task)

                for _ in backend.generate(todo, params, persist):
                    pass
        return {uid: self.answers.get(key) or failures.get(uid) or {"status": "failed", "error": "no answer"}
                for uid, key in keys.items()}  # fmt: skip


def jsonable(value: Any) -> Any:
    """Config values (paths, tuples, nested dataclass dicts) as plain JSON values."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    write_json(path, data, default=str)
