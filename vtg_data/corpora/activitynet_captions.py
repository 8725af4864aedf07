"""ActivityNet Captions: ``{"v_<ytid>": {duration, timestamps, sentences}}`` in seconds.

VTG papers test on ``val_2``. Sentences often start with a space (kept in ``query_raw``); a few
hundred ends exceed the duration by <= 0.01 s and train has inverted and zero-length windows: all
repaired or flagged, none dropped. The same record layout is used by our synthetic corpus.
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

_STANFORD = "https://cs.stanford.edu/people/ranjaykrishna/densevid/captions.zip"
_2DTAN = "https://raw.githubusercontent.com/microsoft/2D-TAN/master/data/ActivityNet"
# 2D-TAN renamed the files: val.json is val_1 and test.json is val_2 (same bytes).
_2DTAN_NAMES = {"train": "train.json", "val_1": "val.json", "val_2": "test.json"}

KNOWN_SHA256 = {"val_2.json": "08fe56568bc92dd02a6150fe1094457a5f2ac72975b8778a922bc9a65aa7f0e9"}


class ActivityNetFormat(CorpusAdapter):
    """Parser for the ActivityNet Captions record layout, shared with corpora that reuse it."""

    duration_source = "annotation"

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        path = files[f"{split}.json"]
        data = load_json(path)
        if not isinstance(data, dict):
            raise RecordRef(str(path), "top level").error(
                f"expected an object keyed by video id, got {type(data).__name__}"
            )
        for key, value in data.items():
            yield RecordRef(str(path), key), (key, value)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        video_id, value = record
        duration = as_duration(require(value, "duration", ref), ref)
        timestamps = require(value, "timestamps", ref)
        sentences = require(value, "sentences", ref)
        if not isinstance(timestamps, list) or not isinstance(sentences, list):
            raise ref.error("'timestamps' and 'sentences' must be lists")
        if len(timestamps) != len(sentences):
            raise ref.error(f"{len(timestamps)} timestamps but {len(sentences)} sentences")
        rows = []
        for index, (window, sentence) in enumerate(zip(timestamps, sentences, strict=True)):
            item = RecordRef(ref.file, f"{ref.record}[{index}]")
            windows, raw, flags = convert_windows([window], duration, item, ctx)
            query, text_flags = query_text(sentence, item)
            rows.append(
                QueryRow(
                    uid=self.uid(split, video_id, index),
                    source=self.name,
                    split=split,
                    video_id=video_id,
                    video_path=self.video_candidates(video_id)[0],
                    duration=duration,
                    duration_source=self.duration_source,
                    query=query,
                    query_raw=sentence,
                    windows=windows,
                    windows_raw=raw,
                    raw_unit="sec",
                    provenance=ctx.provenance(ref.file, item.record),
                    flags=flags | text_flags,
                    extra=self.extra_for(value, index),
                )
            )
        return rows

    def extra_for(self, value: dict, index: int) -> dict:
        return {}


class ActivityNetCaptions(ActivityNetFormat):
    name = "activitynet_captions"
    splits = ("train", "val_1", "val_2")
    licence = "annotations: unstated by the authors; videos: YouTube terms"
    benchmark_splits = {"val_2": "activitynet_val_2"}
    homepage = "https://cs.stanford.edu/people/ranjaykrishna/densevid/"
    video_sources = (
        VideoSource(
            "ActivityNet v1.3 videos (request form at activity-net.org; or crawl YouTube ids)",
            kind="official",
            note="no public direct URL; use a mirror or place files under videos/activitynet_captions/",
        ),
        VideoSource(
            "VideoMind-Dataset mirror (split tar.gz, 12 parts)",
            tuple(
                Remote(
                    hf_repo="yeliudev/VideoMind-Dataset",
                    hf_path=f"activitynet/videos.tar.gz.{i:02d}",
                    kind="hf",
                )
                for i in range(12)
            ),
            kind="hf",
        ),
    )

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        name = f"{split}.json"
        return [
            NativeFile(
                name,
                (
                    Remote(_STANFORD, member=name),
                    Remote(f"{_2DTAN}/{_2DTAN_NAMES[split]}", kind="mirror"),
                    Remote(
                        hf_repo="yeliudev/VideoMind-Dataset",
                        hf_path=f"activitynet_captions/{name}",
                        kind="hf",
                    ),
                ),
                KNOWN_SHA256.get(name),
            )
        ]

    def video_candidates(self, video_id: str) -> list[str]:
        bare = video_id[2:] if video_id.startswith("v_") else video_id
        return [f"{video_id}{ext}" for ext in (".mp4", ".mkv", ".webm")] + [f"{bare}.mp4"]
