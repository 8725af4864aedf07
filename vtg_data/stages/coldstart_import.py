"""Importing teacher traces that were made elsewhere (TVG-R1's Gemini annotations, any JSONL).

Accepted records, one per line (JSONL) or as a JSON list:

- ``{"uid": ..., "response": ...}``;
- ``{"video": ..., "query": ..., "response": ...}`` (also ``problem``/``question``/``sentence`` for
  the query, ``video_id``/``path`` for the video, ``answer``/``output``/``solution``/``cot``/``text``
  for the trace);
- chat records (``conversations`` with ``from``/``value``, or ``messages`` with ``role``/``content``):
  the assistant turn is the trace, the user turn must contain the sample's query;
- TVG-R1's records, whose ``problem`` is a whole instruction containing the query.

Videos match across naming schemes (``v_`` prefixes, paths, extensions) and queries ignore case and
punctuation. Bytes that are not UTF-8 are kept as replacement characters, so the ``encoding`` rule
rejects that trace instead of the import failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtg_data.leakage import query_key, video_key

TEXT_KEYS = ("response", "answer", "output", "solution", "cot", "text", "completion")
QUERY_KEYS = ("query", "problem", "question", "sentence", "caption")
VIDEO_KEYS = ("video", "video_id", "vid", "path", "video_path")


@dataclass
class ImportResult:
    traces: list[tuple[str, str, str]] = field(default_factory=list)  # (uid, text, origin)
    unmatched: list[str] = field(default_factory=list)  # "file:line: why"
    ambiguous: list[str] = field(default_factory=list)  # "file:line: the uids it could be"
    by_containment: int = 0  # matched because the record's text contains one sample's query


def _records(path: Path) -> list[tuple[str, Any]]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            return [(f"item {i}", r) for i, r in enumerate(json.loads(text))]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from exc
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"line {lineno}", json.loads(line)))
        except json.JSONDecodeError:
            records.append((f"line {lineno}", None))
    return records


def _first(record: dict, keys: tuple[str, ...]) -> Any:
    return next((record[k] for k in keys if isinstance(record.get(k), str)), None)


def _chat(record: dict) -> tuple[str | None, str | None]:
    turns = record.get("conversations") or record.get("messages")
    if not isinstance(turns, list):
        return None, None
    user = assistant = None
    for turn in turns:
        if not isinstance(turn, dict):
            continue
        role = turn.get("from") or turn.get("role")
        content = turn.get("value", turn.get("content"))
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if role in ("human", "user"):
            user = content
        elif role in ("gpt", "assistant"):
            assistant = content
    return user, assistant


def import_traces(paths: list[Path], samples: list[dict]) -> ImportResult:
    """Each record's trace with the sample it belongs to.

    A record names its sample by ``uid``, or by its video plus the query. The query may be the
    sample's own text, or an instruction that *contains* it (TVG-R1's ``problem`` is a whole
    prompt, a chat record's user turn likewise): then the sample is the one on that video whose
    normalized query appears in the text as whole words. Where several do, the longest wins if
    every other is part of it ("opens the door" inside "opens the door and leaves"); otherwise
    the record is ambiguous, reported with its candidates and never guessed.
    """
    by_uid = {s["uid"]: s for s in samples}
    by_video_query: dict[tuple[str, str], str] = {}
    by_video: dict[str, list[tuple[str, str]]] = {}
    for sample in samples:
        key = video_key(sample["video_id"], sample.get("parent_video_id"))
        query = query_key(sample["query"])
        by_video_query[(key, query)] = sample["uid"]
        by_video.setdefault(key, []).append((query, sample["uid"]))
    result = ImportResult()
    for path in paths:
        origin = f"import:{Path(path).name}"
        for where, record in _records(Path(path)):
            place = f"{Path(path).name}:{where}"
            if not isinstance(record, dict):
                result.unmatched.append(f"{place}: not a JSON object")
                continue
            user, assistant = _chat(record)
            text = _first(record, TEXT_KEYS) if assistant is None else assistant
            if not isinstance(text, str):
                result.unmatched.append(f"{place}: no trace text ({'/'.join(TEXT_KEYS)} or a chat turn)")
                continue
            uid = record.get("uid") if record.get("uid") in by_uid else None
            video = _first(record, VIDEO_KEYS)
            if uid is None and video is not None:
                key = video_key(video)
                said = _first(record, QUERY_KEYS) or user
                if said is not None:
                    uid = by_video_query.get((key, query_key(said)))
                    if uid is None:
                        candidates = _contained(query_key(said), by_video.get(key, []))
                        if len(candidates) == 1:
                            uid = candidates[0]
                            result.by_containment += 1
                        elif candidates:
                            result.ambiguous.append(
                                f"{place}: its text contains the queries of {', '.join(candidates)}"
                            )
                            continue
            if uid is None:
                result.unmatched.append(f"{place}: matches no sample (uid, or video + query)")
                continue
            result.traces.append((uid, text, origin))
    return result


def _contained(said: str, video_samples: list[tuple[str, str]]) -> list[str]:
    """uids of the samples whose query appears in ``said`` as whole words; the longest alone if
    every other match is part of it."""
    padded = f" {said} "
    hits = [(query, uid) for query, uid in video_samples if query and f" {query} " in padded]
    if len(hits) > 1:
        longest = max(hits, key=lambda hit: len(hit[0]))
        if all(f" {q} " in f" {longest[0]} " for q, _ in hits):
            return [longest[1]]
    return sorted(uid for _, uid in hits)
