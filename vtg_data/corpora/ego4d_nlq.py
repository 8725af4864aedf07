"""Ego4D natural-language queries (official ``nlq_{train,val}.json``, ``nlq_test_unannotated.json``).

Nested videos -> clips -> annotations -> ``language_queries``. The media is the clip (about 480 s
of the canonical video, ``video_start_sec``/``video_end_sec``), windows are clip seconds
(``clip_start_sec``/``clip_end_sec``), so ``video_id`` is the ``clip_uid``, ``parent_video_id``
the ``video_uid`` and ``clip_start``/``clip_end`` the clip's place in it. A query is identified by
(clip, annotation, index). Some entries have no ``query`` text: they are kept as ``has_gt=false``
rows flagged ``query_missing`` (the official converter drops them). The test file has no windows
(``has_gt=false``). The official metric counts a hit only when IoU > threshold (strict) and its
"mIoU" averages the top 3; report ``vtg-data eval`` numbers with that in mind. Access needs the
Ego4D licence: pass the files with ``--from``.

VideoMind-Dataset's copy (``ego4d_nlq/nlq_{train,val}.jsonl``: one query per line with ``vid`` =
the clip, ``duration``, ``query``, ``relevant_windows`` in clip seconds) is read when the official
file is absent (``--mirror videomind``, still under the Ego4D licence); it has no canonical-video
offsets, so ``parent_video_id``/``clip_start`` stay empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vtg_data.corpora.base import (
    CorpusAdapter,
    NativeFile,
    ParseContext,
    Remote,
    VideoSource,
    convert_windows,
    iter_jsonl,
    load_json,
    query_text,
    require,
)
from vtg_data.schema import QueryRow, RecordRef, as_duration, as_time

FILES = {"train": "nlq_train.json", "val": "nlq_val.json", "test": "nlq_test_unannotated.json"}
_MIRROR = "yeliudev/VideoMind-Dataset"
KEEP = ("template", "slot_x", "verb_x", "slot_y", "verb_y", "raw_tags")


class Ego4DNLQ(CorpusAdapter):
    name = "ego4d_nlq"
    splits = ("train", "val", "test")
    task = "moment retrieval (questions)"
    licence = "Ego4D licence agreement (no redistribution)"
    homepage = "https://ego4d-data.org/docs/benchmarks/episodic-memory/"
    benchmark_splits = {"val": "ego4d_nlq_val", "test": "ego4d_nlq_test"}  # val: the scored split
    video_sources = (
        VideoSource("Ego4D NLQ clips", note="sign the Ego4D licence and use the ego4d CLI, then pass --from"),
    )

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        official = NativeFile(FILES[split], optional=split != "test")
        if split == "test":
            return [official]
        name = f"nlq_{split}.jsonl"
        return [
            official,
            NativeFile(
                name, (Remote(hf_repo=_MIRROR, hf_path=f"ego4d_nlq/{name}", kind="hf"),), optional=True
            ),
        ]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        if FILES[split] not in files:
            for ref, record in iter_jsonl(files[f"nlq_{split}.jsonl"]):
                yield ref, ("videomind", record)
            return
        path = files[FILES[split]]
        data = load_json(path)
        videos = require(data, "videos", RecordRef(str(path), "top level"))
        for v_index, video in enumerate(videos):
            vref = RecordRef(str(path), f"videos[{v_index}]")
            for c_index, clip in enumerate(require(video, "clips", vref)):
                cref = RecordRef(str(path), f"videos[{v_index}].clips[{c_index}]")
                yield cref, (video, clip)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        if record[0] == "videomind":
            return self._videomind_row(split, ref, record[1], ctx)
        video, clip = record
        clip_uid = str(require(clip, "clip_uid", ref))
        clip_start = as_time(require(clip, "video_start_sec", ref), "video_start_sec", ref)
        clip_end = as_time(require(clip, "video_end_sec", ref), "video_end_sec", ref)
        duration = as_duration(clip_end - clip_start, ref)
        rows = []
        for a_index, annotation in enumerate(clip.get("annotations", [])):
            annotation_uid = str(annotation.get("annotation_uid", a_index))
            for q_index, item in enumerate(require(annotation, "language_queries", ref)):
                iref = RecordRef(ref.file, f"{ref.record}.annotations[{a_index}].language_queries[{q_index}]")
                text = item.get("query")
                row = QueryRow(uid=self.uid(split, clip_uid, annotation_uid, q_index), source=self.name,
                               split=split, video_id=clip_uid, video_path=f"{clip_uid}.mp4",
                               parent_video_id=str(require(video, "video_uid", ref)), clip_start=clip_start,
                               clip_end=clip_end, duration=duration, duration_source="clip_span", query="",
                               query_raw=text or "", windows=[], windows_raw=[], raw_unit="sec",
                               provenance=ctx.provenance(ref.file, iref.record),
                               extra={k: item[k] for k in KEEP if k in item})  # fmt: skip
                if "clip_start_sec" in item and "clip_end_sec" in item:
                    row.windows, row.windows_raw, row.flags = convert_windows(
                        [[item["clip_start_sec"], item["clip_end_sec"]]], duration, iref, ctx
                    )
                else:
                    row.has_gt = False
                if isinstance(text, str) and text.strip():
                    row.query, text_flags = query_text(text, iref)
                    row.flags |= text_flags
                else:
                    row.has_gt = False
                    row.flags.add("query_missing")
                rows.append(row)
        return rows

    def _videomind_row(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        clip_uid = str(require(record, "vid", ref))
        duration = as_duration(require(record, "duration", ref), ref)
        windows, raw, flags = convert_windows(require(record, "relevant_windows", ref), duration, ref, ctx)
        text = require(record, "query", ref)
        query, text_flags = query_text(text, ref)
        line = ref.record.split()[-1]
        return [QueryRow(uid=self.uid(split, "videomind", line), source=self.name, split=split, video_id=clip_uid,
                         video_path=f"{clip_uid}.mp4", duration=duration, duration_source="annotation", query=query,
                         query_raw=text, windows=windows, windows_raw=raw, raw_unit="sec", flags=flags | text_flags,
                         provenance=ctx.provenance(ref.file, ref.record))]  # fmt: skip
