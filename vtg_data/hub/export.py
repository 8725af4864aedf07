"""``vtg-data export``: our tables in the formats other trainers and evaluators read, with what
each of them needs to run written beside the data (``consumer_files``).

Ground truth always comes from ``windows``, the human annotation, every window where the format
can hold several: EasyR1's ``answer``, TVG-R1's ``gt_frame``, TRL's ``solution`` and lmms-eval's
``windows`` are what rewards and metrics score against. A cold-start set's ``target_window`` (the
teacher's own window under ``--target teacher``) reaches an export only inside the SFT target, the
assistant turn whose reasoning it ends. ``NAME.manifest.json`` says which column fed which field.

- ``easyr1``: ``prompt`` (``<video>`` + the query), ``answer`` (the windows and duration as one JSON
  string), ``videos``.
- ``tvg-r1``: TVG-R1's RL records (``dataset``, ``problem``, ``choices``, ``video``, ``video_length``,
  ``gt_frame``, ``ground_truth``); a JSON list, or JSON lines when ``--out`` ends in ``.jsonl``
  (TVG-R1's loader reads each by its suffix). Grounded questions with options (ReXTime, NExT-GQA,
  TVG-R1's own) become its multiple-choice items in ``NAME.choice.json``: ``choices`` "(A) ...",
  ``ground_truth`` the letter, trained by its ``tvg`` score (boxed letter, format, IoU) in a run of
  their own; the grounding rows keep ``tvgonly``.
- ``trl``: conversational ``prompt`` (system + user with a video part), ``solution`` (windows),
  ``duration``; SFT sets add ``completion``.
- ``llamafactory``: ShareGPT ``messages`` (OpenAI role/content tags) with one ``<video>`` and ``videos``.
- ``lmms-eval``: ``video``, ``caption``, ``timestamp`` (the first window, as ``lmms-lab/charades_sta``),
  ``windows`` (all), ``duration`` and the full ``prompt``.

Video paths are absolute (``--video-root`` + source + ``video_path``): each tool opens the files.
Every data file is JSON lines, except a ``.json`` ``--out``, which gets one JSON list.
Rows go out in file then row order (a hub folder's shards are already sorted by uid), one record
batch at a time, so an export's memory does not grow with the set (``benchmarks/export_memory.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vtg_data import __version__
from vtg_data.data_root import video_file
from vtg_data.files import atomic_path, write_json
from vtg_data.grounding.answer import time_answer
from vtg_data.grounding.prompts import PromptTemplate, get_prompt
from vtg_data.hub import consumer_files
from vtg_data.hub.consumer_hooks import answer_json
from vtg_data.stats import query_tables

FORMATS = ("easyr1", "tvg-r1", "trl", "llamafactory", "lmms-eval")
BATCH_ROWS = 1024  # rows converted at a time: an export's memory follows this, not the set's size

# Which column fed which exported field, per format (written to the manifest).
FIELD_SOURCES: dict[str, dict[str, str]] = {
    "easyr1": {"prompt": "<video> + query (the prompt's user text)", "answer": "windows (all) + duration",
               "videos": "video_root/source/video_path"},
    "tvg-r1": {"problem": "query", "gt_frame": "windows[0] (the format holds one window)",
               "ground_truth": "windows[0] as <time>[s, e]</time>", "video_length": "duration",
               "video": "video_root/source/video_path"},
    "trl": {"prompt": "system + <video> + query", "solution": "windows (all)", "duration": "duration",
            "completion": "the SFT set's assistant turn (teacher trace ending in target_window), SFT sets only"},
    "llamafactory": {"messages[user]": "<video> + query", "videos": "video_root/source/video_path",
                     "messages[assistant]": "the SFT set's assistant turn (teacher trace ending in target_window), "
                                            "else windows as <time>[s, e]</time>"},
    "lmms-eval": {"timestamp": "windows[0]", "windows": "windows (all)", "caption": "query",
                  "prompt": "system + query", "duration": "duration", "video": "video_root/source/video_path"},
}  # fmt: skip


@dataclass
class ExportResult:
    out: Path
    rows: int
    files: list[Path]  # the data file, the manifest, then what the consumer needs
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _tables(source: Path) -> list[Path]:
    source = Path(source)
    data = source / "data"
    if data.is_dir() and list(data.glob("*.parquet")):
        return sorted(data.glob("*.parquet"))
    return query_tables(source)


def human_windows(row: dict) -> list[list[float]]:
    """Every ground-truth window of the row, rounded to the millisecond; never the teacher's."""
    windows = row.get("windows") or []
    if not windows:
        raise ValueError(f"row {row['uid']} has no ground-truth window to export")
    return [[round(float(s), 3), round(float(e), 3)] for s, e in windows]


def _assistant(row: dict) -> str | None:
    for message in row.get("messages") or []:
        if message["role"] == "assistant":
            return "".join(part["text"] or "" for part in message["content"])
    return None


def export_rows(
    rows: Iterable[dict], fmt: str, video_root: Path, prompt: str = "tvg_r1_think"
) -> Iterator[dict]:
    """Each row as ``fmt``'s record, one at a time (an export never holds the whole set)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    template = get_prompt(prompt)
    for row in rows:
        yield _record(row, fmt, video_root, template)


def _table_rows(tables: list[Path], counts: dict[str, int], keep=None) -> Iterator[dict]:
    """The exportable rows (ground truth present, no failure, and ``keep(row)`` if given) of every
    table, one record batch at a time, in file then row order; ``counts`` is updated as they pass."""
    for table in tables:
        for batch in pq.ParquetFile(table).iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                counts["rows_read"] += 1
                if not (row.get("has_gt", True) and row.get("status") in (None, "ok")):
                    continue
                if keep is not None and not keep(row):
                    continue
                counts["multi_window"] += len(row.get("windows") or []) > 1
                yield row


def multiple_choice(row: dict) -> tuple[list[str], str] | None:
    """A grounded question's options and the letter of the right one, from ``extra`` (ReXTime's
    ``ans``, TVG-R1's letter ``answer``, NExT-GQA's answer text among its options), or None."""
    if row.get("task") != "grounded_qa":
        return None
    extra = json.loads(row.get("extra") or "{}")
    options = extra.get("options") or []
    if isinstance(options, str) or not options:
        return None
    letters = [chr(ord("A") + i) for i in range(len(options))]
    answer = extra.get("ans") or extra.get("answer")
    if isinstance(answer, str) and answer.strip().strip("()").upper() in letters:
        return list(options), answer.strip().strip("()").upper()
    if answer in options:
        return list(options), letters[options.index(answer)]
    return None


def _choice_record(row: dict, video_root: Path) -> dict:
    """TVG-R1's multiple-choice item (its ``tvg`` score: the boxed letter, the format, the IoU)."""
    options, letter = multiple_choice(row)
    labelled = [re.sub(r"^\(?[A-Z][).:]\s*", "", str(o)) for o in options]  # TVG-R1's own items say "(A) ..."
    choices = [f"({chr(ord('A') + i)}) {text}" for i, text in enumerate(labelled)]
    video = str(video_file(video_root, row["source"], row["video_path"]).resolve())
    return {"dataset": row["source"], "problem": row["query"] + " ", "choices": choices, "video": video,
            "video_length": row["duration"], "gt_frame": human_windows(row)[0], "ground_truth": letter,
            "uid": row["uid"]}  # fmt: skip


def _is_choice(row: dict) -> bool:
    return multiple_choice(row) is not None


def _write_records(out: Path, records: Iterator[dict], source: Path, allow_empty: bool = False) -> int:
    """JSON lines, or one JSON list when ``out`` ends in ``.json``; written whole or not at all (an
    export with no record writes nothing and names ``source``, unless ``allow_empty``)."""
    as_list = out.suffix == ".json"
    written = 0
    with atomic_path(out) as tmp, open(tmp, "w") as handle:
        opening, separator, closing = ("[\n", ",\n", "\n]\n") if as_list else ("", "", "")
        handle.write(opening)
        for record in records:
            handle.write((separator if written else "") + json.dumps(record) + ("" if as_list else "\n"))
            written += 1
        handle.write(closing)
        if not written and not allow_empty:
            raise ValueError(f"{source}: nothing to export")
    return written


def _record(row: dict, fmt: str, video_root: Path, template: PromptTemplate) -> dict:
    video = str(video_file(video_root, row["source"], row["video_path"]).resolve())
    windows = human_windows(row)
    query = template.user_text(row["query"])
    completion = _assistant(row)
    if fmt == "easyr1":
        return {"prompt": f"<video>{query}", "answer": answer_json(windows, row["duration"]), "videos": [video],
                "uid": row["uid"]}  # fmt: skip
    if fmt == "tvg-r1":
        return {"dataset": row["source"], "problem": row["query"], "choices": "", "video": video,
                "video_length": row["duration"], "gt_frame": windows[0], "ground_truth": time_answer(windows[0]),
                "uid": row["uid"]}  # fmt: skip
    if fmt == "trl":
        record = {
            "prompt": [{"role": "system", "content": [{"type": "text", "text": template.system}]},
                       {"role": "user", "content": [{"type": "video", "path": video}, {"type": "text", "text": query}]}],
            "solution": windows, "duration": row["duration"], "uid": row["uid"],
        }  # fmt: skip
        if completion is not None:
            record["completion"] = [{"role": "assistant", "content": [{"type": "text", "text": completion}]}]
        return record
    if fmt == "llamafactory":
        answer = completion or " ".join(time_answer(w) for w in windows)
        messages = [{"role": "system", "content": template.system}, {"role": "user", "content": f"<video>{query}"},
                    {"role": "assistant", "content": answer}]  # fmt: skip
        return {"messages": messages, "videos": [video], "uid": row["uid"]}
    full_prompt = f"{template.system}\n{query}" if template.system else query
    return {"video": video, "caption": row["query"], "timestamp": windows[0], "windows": windows,
            "duration": row["duration"], "prompt": full_prompt, "uid": row["uid"]}  # fmt: skip


def _sidecar(fmt: str, out: Path, template: PromptTemplate, video_root: Path, preset: str):
    if fmt == "easyr1":
        return consumer_files.easyr1_files(out, template, preset)
    if fmt == "tvg-r1":
        return consumer_files.tvg_r1_files(out, template, video_root)
    if fmt == "llamafactory":
        return consumer_files.llamafactory_files(out)
    if fmt == "lmms-eval":
        return consumer_files.lmms_eval_files(out, template)
    return consumer_files.trl_files(out, preset)


def manifest_path(out: Path) -> Path:
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.manifest.json")


def export(
    source: Path, fmt: str, out: Path, video_root: Path, prompt: str = "tvg_r1_think", reward: str = "tvg_r1"
) -> ExportResult:
    tables = _tables(source)
    template = get_prompt(prompt)
    out = Path(out)
    counts = {"rows_read": 0, "multi_window": 0}
    grounding = (lambda row: multiple_choice(row) is None) if fmt == "tvg-r1" else None
    choice_rows = (
        sum(1 for _ in _table_rows(tables, {"rows_read": 0, "multi_window": 0}, _is_choice))
        if grounding
        else 0
    )
    records = export_rows(_table_rows(tables, counts, grounding), fmt, video_root, prompt)
    exported = _write_records(out, records, source, allow_empty=bool(choice_rows))

    sidecar = _sidecar(fmt, out, template, video_root, reward)
    several = counts["multi_window"]
    warnings = list(sidecar.warnings)
    extra_manifest: dict[str, Any] = {}
    if (
        choice_rows
    ):  # TVG-R1 trains multiple-choice items with its ``tvg`` score: a file and a run of their own
        choice_out = out.with_name(
            f"{out.name[: -len(out.suffix)] if out.suffix else out.name}.choice{out.suffix}"
        )
        counted = {"rows_read": 0, "multi_window": 0}
        written = _write_records(choice_out, (_choice_record(r, video_root) for r in _table_rows(tables, counted, _is_choice)),
                                 source)  # fmt: skip
        choice_files = consumer_files.tvg_r1_files(
            choice_out, get_prompt("tvg_r1_choice"), video_root, score="tvg"
        )
        sidecar.files += [choice_out, *choice_files.files]
        extra_manifest = {"multiple_choice": {"file": str(choice_out), "items": written,
                                              "launch": choice_files.launch,
                                              "reward": "TVG-R1's tvg: 0.7 boxed letter + 0.1 format + 0.2 IoU"}}  # fmt: skip
        exported += written
    if several and fmt == "tvg-r1":
        warnings.append(
            f"{several} rows have several ground-truth windows; TVG-R1's gt_frame holds the first only"
        )
    manifest = {
        "stage": "export",
        "toolkit_version": __version__,
        "format": fmt,
        "source": [str(t) for t in tables],
        "video_root": str(Path(video_root).resolve()),
        "prompt": {"name": template.name, "hash": template.hash, "answer_budget": template.answer_budget},
        "reward": reward,
        "counts": {"rows_read": counts["rows_read"], "exported": exported, "multi_window": several,
                   "skipped_without_ground_truth_or_failed": counts["rows_read"] - exported},
        "fields": FIELD_SOURCES[fmt],
        "consumer_files": [str(p) for p in sidecar.files],
        "launch": sidecar.launch,
        "warnings": warnings,
        **extra_manifest,
    }  # fmt: skip
    manifest_file = write_json(manifest_path(out), manifest, sort_keys=False)
    return ExportResult(out, exported, [out, manifest_file, *sidecar.files], manifest, warnings)
