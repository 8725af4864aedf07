"""Pieces every model-calling stage shares: the call cache, uid sharding, manifests."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtg_data.files import write_json
from vtg_data.lvlm import GenerationParams, InferenceBackend, Request, Response
from vtg_data.lvlm.pricing import BudgetReached, Price, Spend


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
            label: str = "", budget: Budget | None = None) -> dict[str, dict]:  # fmt: skip
        """The answer of every request (``{"status": "failed", ...}`` for failures); asks only the
        backend for the ones not cached. With a ``budget``, ``BudgetReached`` stops the run once
        the answers' cost reaches it (every answer received is saved first; a rerun continues)."""
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
                    if response.usage:
                        record["usage"] = response.usage
                    if response.seconds is not None:
                        record["seconds"] = round(response.seconds, 3)
                    sink.write(json.dumps(record) + "\n")
                    sink.flush()
                    os.fsync(sink.fileno())
                    if response.ok:
                        self.answers[record["key"]] = record
                    else:
                        failures[response.uid] = record
                    if task is not None:
                        progress.advance(task)
                    if budget is not None and budget.charge(response.usage):
                        cancel = getattr(backend, "cancel", None)
                        if cancel is not None:
                            cancel()  # no new calls; the answers already paid for still arrive and are saved

                for _ in backend.generate(todo, params, persist):
                    pass
            if budget is not None and budget.reached:
                raise BudgetReached(budget.message())
        return {uid: self.answers.get(key) or failures.get(uid) or {"status": "failed", "error": "no answer"}
                for uid, key in keys.items()}  # fmt: skip


@dataclass
class Budget:
    """A spending limit (USD) at a price, with what was spent before (cached answers)."""

    limit: float
    price: Price
    spent: Spend = field(default_factory=Spend)

    def charge(self, usage: dict | None) -> bool:
        """Count an answer's tokens; True once the spending has reached the limit."""
        self.spent.add(usage)
        return self.reached

    @property
    def reached(self) -> bool:
        return (self.spent.cost(self.price) or 0.0) >= self.limit

    def message(self) -> str:
        cost = self.spent.cost(self.price) or 0.0
        return (
            f"budget reached: {cost:.4f} USD spent of {self.limit:.4f} ({self.spent.calls} calls, "
            f"{self.spent.prompt_tokens} prompt + {self.spent.output_tokens + self.spent.thought_tokens} "
            "output tokens); every answer received is saved, rerun with a higher --budget to continue"
        )


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
