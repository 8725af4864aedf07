"""InternVid-VTime in the VideoMind-Dataset layout: one JSON object per line with ``vid``,
``duration``, ``query`` and ``span`` (one ``[s, e]`` window in seconds, or a list of them).

The videos are pre-cropped segments of YouTube videos (``videos_crop_3fps_480_noaudio``); times
and durations are relative to the crop, which is the media loaded, so they are used as they are
and the rows are flagged ``crop_relative``. The first 11 characters of ``vid`` are the YouTube id
(``parent_video_id``), so leakage checks see the source video. Training data only.
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

FILE = "anno_internvid_vtime_query_gpt4o_mini.jsonl"
_MIRROR = "yeliudev/VideoMind-Dataset"


class InternVidVTime(CorpusAdapter):
    name = "internvid_vtime"
    splits = ("train",)
    licence = "InternVid terms (research use); videos: YouTube terms"
    homepage = "https://huggingface.co/datasets/yeliudev/VideoMind-Dataset"
    video_sources = (
        VideoSource("VideoMind-Dataset mirror (cropped, 3 fps, 480p)",
                    (Remote(hf_repo=_MIRROR, hf_path="internvid_vtime/videos_crop_3fps_480_noaudio.tar.gz", kind="hf"),),
                    kind="hf"),
    )  # fmt: skip

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        return [NativeFile(FILE, (Remote(hf_repo=_MIRROR, hf_path=f"internvid_vtime/{FILE}", kind="hf"),))]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        yield from iter_jsonl(files[FILE])

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        vid = str(require(record, "vid", ref))
        duration = as_duration(require(record, "duration", ref), ref)
        span = require(record, "span", ref)
        spans = span if span and isinstance(span[0], (list, tuple)) else [span]
        windows, raw, flags = convert_windows(spans, duration, ref, ctx, what="span")
        raw_query = require(record, "query", ref)
        query, text_flags = query_text(raw_query, ref)
        video_id = vid[:-4] if vid.endswith(".mp4") else vid
        line = ref.record.split()[-1]
        return [QueryRow(uid=self.uid(split, line), source=self.name, split=split, video_id=video_id,
                         video_path=f"{video_id}.mp4", parent_video_id=video_id[:11], duration=duration,
                         duration_source="annotation", query=query, query_raw=raw_query, windows=windows,
                         windows_raw=raw, raw_unit="sec", flags=flags | text_flags | {"crop_relative"},
                         provenance=ctx.provenance(ref.file, ref.record))]  # fmt: skip
