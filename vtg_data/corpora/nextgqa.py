"""NExT-GQA: NExT-QA questions with the time spans that answer them (``{split}.csv`` with
``video_id, qid, question, answer, type, a0..a4``; ``gsub_{split}.json`` with ``{video_id:
{duration, location: {qid: [[s, e], ...]}}}``; ``map_vid_vidorID.json`` from ``video_id`` to the
VidOR file path). Several spans of one question are the union of the evidence (``multi_window``).
A question without a span in ``gsub`` has no ground truth (``has_gt=false``); a span for a
question the CSV lacks is an error. Rows are ``task=grounded_qa``; test rows carry the
``nextgqa_test`` tag (the benchmark TVG-R1 reports). The usual metrics add IoP (intersection
over prediction) to IoU.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vtg_data.corpora.base import (
    CorpusAdapter,
    NativeFile,
    ParseContext,
    Remote,
    convert_windows,
    load_json,
    query_text,
    read_text,
    require,
)
from vtg_data.schema import QueryRow, RecordRef, as_duration

_REPO = "https://raw.githubusercontent.com/doc-doc/NExT-GQA/main/datasets/nextgqa"
MAP_FILE = "map_vid_vidorID.json"
_CSV_FIELDS = ("video_id", "qid", "question")


class NExTGQA(CorpusAdapter):
    name = "nextgqa"
    splits = ("val", "test")
    task = "grounded question answering"
    licence = "MIT (NExT-GQA annotations); videos: VidOR terms"
    homepage = "https://github.com/doc-doc/NExT-GQA"
    benchmark_splits = {"test": "nextgqa_test"}

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        names = (f"{split}.csv", f"gsub_{split}.json", MAP_FILE)
        return [
            NativeFile(n, (Remote(f"{_REPO}/{n}", kind="mirror"),), optional=n == MAP_FILE) for n in names
        ]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        table = files[f"{split}.csv"]
        spans = load_json(files[f"gsub_{split}.json"])
        paths = load_json(files[MAP_FILE]) if MAP_FILE in files else {}
        reader = csv.DictReader(io.StringIO(read_text(table)))
        missing = [f for f in _CSV_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise RecordRef(str(table), "header").error(f"missing column(s) {', '.join(missing)}")
        asked = set()
        for lineno, record in enumerate(reader, start=2):
            asked.add((record["video_id"], str(record["qid"])))
            yield RecordRef(str(table), f"line {lineno}"), (record, spans, paths)
        gsub = files[f"gsub_{split}.json"]
        for video_id, entry in spans.items():
            for qid in require(entry, "location", RecordRef(str(gsub), video_id)):
                if (video_id, str(qid)) not in asked:
                    raise RecordRef(str(gsub), f"{video_id}/{qid}").error(
                        f"a span for question {qid}, which {table.name} lacks"
                    )

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        row, spans, paths = record
        video_id, qid = row["video_id"], str(row["qid"])
        entry = spans.get(video_id)
        video_path = f"{paths[video_id]}.mp4" if video_id in paths else f"{video_id}.mp4"
        question, text_flags = query_text(row["question"], ref)
        options = [row[f"a{i}"] for i in range(5) if f"a{i}" in row]
        out = QueryRow(uid=f"{self.name}/{split}/{video_id}/{qid}", source=self.name, split=split, task="grounded_qa",
                       video_id=video_id, video_path=video_path, duration=0.0, duration_source="annotation",
                       query=question, query_raw=row["question"], windows=[], windows_raw=[], raw_unit="sec",
                       flags=text_flags, provenance=ctx.provenance(ref.file, ref.record),
                       extra={"answer": row.get("answer"), "type": row.get("type"), "options": options})  # fmt: skip
        if entry is None:
            raise ref.error(f"video {video_id} is not in gsub_{split}.json (no duration)")
        out.duration = as_duration(require(entry, "duration", ref), ref)
        windows = require(entry, "location", ref).get(qid)
        if not windows:
            out.has_gt = False
            return [out]
        out.windows, out.windows_raw, flags = convert_windows(windows, out.duration, ref, ctx, what="span")
        out.flags |= flags
        return [out]
