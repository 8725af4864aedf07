"""QVHighlights: JSONL with ``relevant_windows`` (integer seconds) inside 150 s YouTube clips.

A query may have many windows (their union is relevant) and carries per-clip saliency scores,
which are kept in ``extra``. The clip's offsets inside the YouTube video come from its name
``{ytid}_{start}_{end}`` (ytids may contain ``_``, hence ``rsplit``). Test ground truth was
released later in ``highlight_test_with_gt.jsonl``; without it, test rows have ``has_gt = False``.
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
    query_text,
    require,
)
from vtg_data.schema import QueryRow, RecordRef, as_duration

_MDETR = "https://raw.githubusercontent.com/jayleicn/moment_detr/main/data"
KNOWN_SHA256 = {
    "highlight_val_release.jsonl": "f668a1eaea156ec5315e14718999cea043a8cf948d3cafbd8e8d655318c3cd02",
}
TEST_WITH_GT = "highlight_test_with_gt.jsonl"


def _native(name: str, optional: bool = False) -> NativeFile:
    return NativeFile(name, (Remote(f"{_MDETR}/{name}"),), KNOWN_SHA256.get(name), optional=optional)


class QVHighlights(CorpusAdapter):
    name = "qvhighlights"
    splits = ("train", "val", "test")
    licence = "annotations CC BY-NC-SA 4.0; videos: YouTube terms"
    benchmark_splits = {"val": "qvhighlights_val", "test": "qvhighlights_test"}
    homepage = "https://github.com/jayleicn/moment_detr"
    video_sources = (
        VideoSource(
            "UNC release of the 150 s clips",
            (Remote("https://nlp.cs.unc.edu/data/jielei/qvh/qvhilights_videos.tar.gz"),),
        ),
        VideoSource(
            "Grounded-VideoLLM mirror (5 zip parts, each a complete zip)",
            tuple(
                Remote(
                    hf_repo="WHB139426/Grounded-VideoLLM", hf_path=f"qvhighlights/chunk_{i}.zip", kind="hf"
                )
                for i in range(1, 6)
            ),
            kind="hf",
        ),
    )

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        if split == "test":
            return [
                _native(TEST_WITH_GT, optional=True),
                _native("highlight_test_release.jsonl", optional=True),
            ]
        return [_native(f"highlight_{split}_release.jsonl")]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        if split == "test":
            path = files.get(TEST_WITH_GT) or files.get("highlight_test_release.jsonl")
            if path is None:
                raise RecordRef("highlight_test_with_gt.jsonl", "-").error(
                    "neither the test file with ground truth nor the release test file is present"
                )
        else:
            path = files[f"highlight_{split}_release.jsonl"]
        yield from iter_jsonl(path)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        qid = require(record, "qid", ref)
        vid = require(record, "vid", ref)
        duration = as_duration(require(record, "duration", ref), ref)
        sentence = require(record, "query", ref)
        parent, clip_start, clip_end = _split_vid(vid, ref)
        has_gt = "relevant_windows" in record
        flags: set[str] = set()
        if has_gt:
            windows, raw, flags = convert_windows(record["relevant_windows"], duration, ref, ctx)
        else:
            windows, raw = [], []
            flags.add("gt_hidden")
        query, text_flags = query_text(sentence, ref)
        extra = {key: record[key] for key in ("relevant_clip_ids", "saliency_scores") if key in record}
        if extra:
            extra["clip_len"] = 2
        return [
            QueryRow(
                uid=self.uid(split, qid),
                source=self.name,
                split=split,
                video_id=vid,
                video_path=f"{vid}.mp4",
                parent_video_id=parent,
                clip_start=clip_start,
                clip_end=clip_end,
                duration=duration,
                duration_source="annotation",
                query=query,
                query_raw=sentence,
                windows=windows,
                windows_raw=raw,
                raw_unit="sec",
                has_gt=has_gt,
                provenance=ctx.provenance(ref.file, ref.record),
                flags=flags | text_flags | {"crop_relative"},
                extra=extra,
            )
        ]


def _split_vid(vid: Any, ref: RecordRef) -> tuple[str, float, float]:
    if not isinstance(vid, str):
        raise ref.error(f"vid is not a string: {vid!r}")
    parts = vid.rsplit("_", 2)
    try:
        return parts[0], float(parts[1]), float(parts[2])
    except (IndexError, ValueError) as exc:
        raise ref.error(f"vid {vid!r} is not '<ytid>_<start>_<end>'") from exc
