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

_COMMIT = "63772e0256ad9e34b83d6a108f1ba2041b924607"
_REPO = f"https://raw.githubusercontent.com/doc-doc/NExT-GQA/{_COMMIT}/datasets/nextgqa"
MAP_FILE = "map_vid_vidorID.json"
# The GitHub files at _COMMIT; gsub_test.json also as VideoMind-Dataset re-serialized it.
KNOWN_SHA256 = {
    "val.csv": ("ac5a1eb1d6dee9cd84ab7f9c94ab345b2404646f24b79ac182cd2aa9e2d424c1",),
    "gsub_val.json": ("4feb23e53102cb2d4779e857ff8f9fd9b552fc38435621406b2ed9b0bf76204b",),
    "test.csv": ("0443ede53f521de4cbfb5e4fb02253926b90f81f62041b18bd17207a3511d114",),
    "gsub_test.json": ("0c16c31699238a0f2b8ace45aeed7f193149ce2f011d6ed4f1ef7170ef5d41e9",
                       "c6961a9e33bf1385a631708ac4d0635737fb934a85cf43fd09cac6d78f2ed3f5"),
    MAP_FILE: ("1955d89e7a175346faf8d4a582297ff349619231394f59fd7872f459ac8a8685",),
}  # fmt: skip
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
        return [NativeFile(n, (Remote(f"{_REPO}/{n}", kind="mirror"),), KNOWN_SHA256.get(n)) for n in names]

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
        out = QueryRow(uid=self.uid(split, video_id, qid), source=self.name, split=split, task="grounded_qa",
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
