"""``vtg-data export``: our tables in the formats other trainers and evaluators read.

- ``easyr1``: EasyR1 RL JSONL: ``prompt`` (with ``<video>``), ``answer`` (the window as JSON),
  ``videos`` (absolute paths).
- ``tvg-r1``: TVG-R1's RL JSON list: ``dataset``, ``problem``, ``choices``, ``video``,
  ``video_length``, ``gt_frame`` (seconds), ``ground_truth``.
- ``trl``: JSONL with conversational ``prompt`` (system + user with a video part) and ``solution``
  (the window); SFT tables (with ``messages``) also carry ``completion``.
- ``llamafactory``: ShareGPT-style ``messages`` with ``<video>`` in the user turn and ``videos``.
- ``lmms-eval``: ``video``, ``caption``, ``timestamp`` (like ``lmms-lab/charades_sta``).

Video paths are written absolute (``--video-root`` + source + ``video_path``), because each of
these tools opens the files directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from vtg_data.grounding.prompts import get_prompt
from vtg_data.stats import query_tables

FORMATS = ("easyr1", "tvg-r1", "trl", "llamafactory", "lmms-eval")


def _tables(source: Path) -> list[Path]:
    source = Path(source)
    data = source / "data"
    if data.is_dir() and list(data.glob("*.parquet")):
        return sorted(data.glob("*.parquet"))
    return query_tables(source)


def _window(row: dict) -> list[float]:
    window = row.get("target_window") or (row["windows"][0] if row.get("windows") else None)
    if not window:
        raise ValueError(f"row {row['uid']} has no ground-truth window to export")
    return [round(float(window[0]), 3), round(float(window[1]), 3)]


def _assistant(row: dict) -> str | None:
    for message in row.get("messages") or []:
        if message["role"] == "assistant":
            return "".join(part["text"] or "" for part in message["content"])
    return None


def export_rows(rows: list[dict], fmt: str, video_root: Path, prompt: str = "tvg_r1_think") -> list[dict]:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    template = get_prompt(prompt)
    records = []
    for row in rows:
        video = str((Path(video_root) / row["source"] / row["video_path"]).resolve())
        window = _window(row)
        answer = f"[{window[0]}, {window[1]}]"
        completion = _assistant(row)
        if fmt == "easyr1":
            records.append({"prompt": f"<video>{template.user_text(row['query'])}", "answer": json.dumps(window),
                            "videos": [video], "uid": row["uid"]})  # fmt: skip
        elif fmt == "tvg-r1":
            records.append({"dataset": row["source"], "problem": row["query"], "choices": "", "video": video,
                            "video_length": row["duration"], "gt_frame": window,
                            "ground_truth": f"<time>{answer}</time>", "uid": row["uid"]})  # fmt: skip
        elif fmt == "trl":
            record = {
                "prompt": [{"role": "system", "content": [{"type": "text", "text": template.system}]},
                           {"role": "user", "content": [{"type": "video", "path": video},
                                                        {"type": "text", "text": template.user_text(row["query"])}]}],
                "solution": window, "duration": row["duration"], "uid": row["uid"],
            }  # fmt: skip
            if completion is not None:
                record["completion"] = [
                    {"role": "assistant", "content": [{"type": "text", "text": completion}]}
                ]
            records.append(record)
        elif fmt == "llamafactory":
            messages = [{"role": "system", "content": template.system},
                        {"role": "user", "content": f"<video>{template.user_text(row['query'])}"}]  # fmt: skip
            messages.append({"role": "assistant", "content": completion or f"<time>{answer}</time>"})
            records.append({"messages": messages, "videos": [video], "uid": row["uid"]})
        else:
            records.append({"video": video, "caption": row["query"], "timestamp": window, "uid": row["uid"],
                            "duration": row["duration"]})  # fmt: skip
    return records


def export(source: Path, fmt: str, out: Path, video_root: Path, prompt: str = "tvg_r1_think") -> int:
    rows = []
    for table in _tables(source):
        rows += pq.read_table(table).to_pylist()
    rows = [r for r in rows if r.get("has_gt", True) and (r.get("status") in (None, "ok"))]
    if not rows:
        raise ValueError(f"{source}: nothing to export")
    records = export_rows(sorted(rows, key=lambda r: r["uid"]), fmt, video_root, prompt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if fmt == "tvg-r1":
        tmp.write_text(json.dumps(records, indent=1) + "\n")
    else:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(out)
    return len(records)
