"""TimeLens: TimeLens-Bench (Gemini-cleaned re-annotations of the Charades-STA, ActivityNet
Captions and QVHighlights test sets) and TimeLens-100K (its training set).

TimeLens-Bench files ``{charades,activitynet,qvhighlights}-timelens.json`` map a video id to
``{duration, spans, queries}``, the i-th span (``[s, e]`` seconds) answering the i-th query; the
videos are ``videos/<benchmark>/<vid>.mp4``. Its rows carry the ``timelens_bench`` tag and the tag
of the original benchmark they re-annotate, so leakage checks catch training on either.
TimeLens-100K (``timelens-100k.jsonl``) holds one video per line: ``{video_path, source, duration,
events: [{query, span}]}``; ``source`` (CosMo-Cap, DiDeMo, HiREST, InternVid-VTime, QuerYD) goes to
``extra``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from vtg_data.corpora.base import (
    CorpusAdapter,
    NativeFile,
    ParseContext,
    Remote,
    convert_windows,
    iter_jsonl,
    load_json,
    query_text,
    require,
)
from vtg_data.schema import QueryRow, RecordRef, as_duration

BENCH_REPO = "TencentARC/TimeLens-Bench"
TRAIN_REPO = "TencentARC/TimeLens-100K"
ORIGINAL = {
    "charades": "charades_sta_test",
    "activitynet": "activitynet_val_2",
    "qvhighlights": "qvhighlights_val",
}
TRAIN_FILE = "timelens-100k.jsonl"


def _spans(value: Any) -> list:
    """One ``[s, e]`` or a list of them."""
    return value if value and isinstance(value[0], (list, tuple)) else [value]


class TimeLensBench(CorpusAdapter):
    name = "timelens_bench"
    splits = ("charades", "activitynet", "qvhighlights")
    task = "moment retrieval (evaluation)"
    licence = "see the TimeLens-Bench card; videos: Charades, ActivityNet and QVHighlights terms"
    homepage = "https://github.com/TencentARC/TimeLens"

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        name = f"{split}-timelens.json"
        return [NativeFile(name, (Remote(hf_repo=BENCH_REPO, hf_path=name, kind="hf"),))]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        path = files[f"{split}-timelens.json"]
        data = load_json(path)
        if not isinstance(data, dict):
            raise RecordRef(str(path), "top level").error("expected an object keyed by video id")
        for vid, record in data.items():
            yield RecordRef(str(path), vid), (vid, record)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        vid, value = record
        duration = as_duration(require(value, "duration", ref), ref)
        spans, queries = require(value, "spans", ref), require(value, "queries", ref)
        if len(spans) != len(queries):
            raise ref.error(f"{len(spans)} spans but {len(queries)} queries")
        rows = []
        for index, (span, raw_query) in enumerate(zip(spans, queries, strict=True)):
            item = RecordRef(ref.file, f"{vid}[{index}]")
            windows, raw, flags = convert_windows(_spans(span), duration, item, ctx, what="span")
            query, text_flags = query_text(raw_query, item)
            rows.append(QueryRow(uid=self.uid(split, vid, index), source=self.name, split=split, video_id=vid,
                                 video_path=f"{split}/{vid}.mp4", duration=duration, duration_source="annotation",
                                 query=query, query_raw=raw_query, windows=windows, windows_raw=raw, raw_unit="sec",
                                 flags=flags | text_flags, provenance=ctx.provenance(ref.file, item.record),
                                 benchmarks=sorted(["timelens_bench", ORIGINAL[split]])))  # fmt: skip
        return rows

    def video_candidates(self, video_id: str) -> list[str]:
        return [f"{split}/{video_id}.mp4" for split in self.splits]


class TimeLens100K(CorpusAdapter):
    name = "timelens_100k"
    splits = ("train",)
    licence = "see the TimeLens-100K card; videos: their source corpora's terms"
    homepage = "https://github.com/TencentARC/TimeLens"

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        return [NativeFile(TRAIN_FILE, (Remote(hf_repo=TRAIN_REPO, hf_path=TRAIN_FILE, kind="hf"),))]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        yield from iter_jsonl(files[TRAIN_FILE])

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        video_path = str(require(record, "video_path", ref))
        duration = as_duration(require(record, "duration", ref), ref)
        video_id = PurePosixPath(video_path).stem
        line = ref.record.split()[-1]
        rows = []
        for index, event in enumerate(require(record, "events", ref)):
            item = RecordRef(ref.file, f"{ref.record} event {index}")
            windows, raw, flags = convert_windows(
                _spans(require(event, "span", item)), duration, item, ctx, what="span"
            )
            raw_query = require(event, "query", item)
            query, text_flags = query_text(raw_query, item)
            rows.append(QueryRow(uid=self.uid(split, line, index), source=self.name, split=split,
                                 video_id=video_id, video_path=video_path, duration=duration,
                                 duration_source="annotation", query=query, query_raw=raw_query, windows=windows,
                                 windows_raw=raw, raw_unit="sec", flags=flags | text_flags,
                                 provenance=ctx.provenance(ref.file, item.record),
                                 extra={"origin": record.get("source")}))  # fmt: skip
        return rows
