"""YouCook2 procedure segments as grounding queries (``youcookii_annotations_trainval.json``).

``{"database": {ytid: {duration, subset, recipe_type, video_url, annotations: [{segment, id,
sentence}]}}}`` with integer-second segments. ``subset`` picks the split (``training`` -> train,
``validation`` -> val; test annotations are withheld). Every segment is one row, exactly once (a
popular loader appends each video's last step twice). Built for dense captioning, so using it for
grounding is non-standard: rows are ``task=step_grounding``.
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
    load_json,
    query_text,
    require,
)
from vtg_data.schema import QueryRow, RecordRef, as_duration

FILE = "youcookii_annotations_trainval.json"
SUBSETS = {"train": "training", "val": "validation"}


class YouCook2(CorpusAdapter):
    name = "youcook2"
    splits = ("train", "val")
    task = "step grounding"
    licence = "unverified (commonly stated as MIT); videos: YouTube terms"
    homepage = "http://youcook2.eecs.umich.edu/"
    video_sources = (
        VideoSource("VideoMind-Dataset mirror", (Remote(hf_repo="yeliudev/VideoMind-Dataset", hf_path="youcook2/videos.tar.gz", kind="hf"),), kind="hf"),
        VideoSource("YouTube", note="download with the official script (many videos are gone)"),
    )  # fmt: skip

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        return [
            NativeFile(
                FILE, (Remote(hf_repo="yeliudev/VideoMind-Dataset", hf_path=f"youcook2/{FILE}", kind="hf"),)
            )
        ]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        path = files[FILE]
        database = require(load_json(path), "database", RecordRef(str(path), "top level"))
        for ytid, entry in database.items():
            ref = RecordRef(str(path), ytid)
            if require(entry, "subset", ref) == SUBSETS[split]:
                yield ref, (ytid, entry)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        ytid, entry = record
        duration = as_duration(require(entry, "duration", ref), ref)
        rows = []
        for index, segment in enumerate(require(entry, "annotations", ref)):
            item = RecordRef(ref.file, f"{ytid}.annotations[{index}]")
            windows, raw, flags = convert_windows([require(segment, "segment", item)], duration, item, ctx)
            sentence = require(segment, "sentence", item)
            query, text_flags = query_text(sentence, item)
            rows.append(QueryRow(uid=self.uid(split, ytid, segment.get('id', index)), source=self.name,
                                 split=split, task="step_grounding", video_id=ytid, video_path=f"{ytid}.mp4",
                                 duration=duration, duration_source="annotation", query=query, query_raw=sentence,
                                 windows=windows, windows_raw=raw, raw_unit="sec", flags=flags | text_flags,
                                 provenance=ctx.provenance(ref.file, item.record),
                                 extra={"recipe_type": entry.get("recipe_type")}))  # fmt: skip
        return rows
