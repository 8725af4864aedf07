"""TACoS in the 2D-TAN release: frame indices at 29.4 fps plus ``num_frames`` per video.

Seconds are ``frame / fps`` and the duration ``num_frames / fps``. Some end frames lie past
``num_frames`` (clamped, flagged) and many (window, sentence) pairs repeat exactly because several
annotators wrote the same text: benchmarks count them, so they are kept and flagged ``duplicate``.
Annotation keys are ``s13-d21.avi`` while the MPII files are ``s13-d21-cam-002.avi``.
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

_2DTAN = "https://raw.githubusercontent.com/microsoft/2D-TAN/master/data/TACoS"
KNOWN_SHA256 = {"test.json": "1c64c8a5ada2b812ee7e230d1577139c5ee8e1e5d9ae2141479c980a0c3fb847"}


class TACoS(CorpusAdapter):
    name = "tacos"
    splits = ("train", "val", "test")
    licence = "MPII Cooking terms (research use)"
    benchmark_splits = {"test": "tacos_test", "val": "tacos_val"}  # val: TVGBench draws from it
    homepage = "https://www.mpi-inf.mpg.de/departments/computer-vision-and-machine-learning/research/vision-and-language/tacos-multi-level-corpus"
    video_sources = (
        VideoSource(
            "MPII-Cooking-2 videos (TACoS uses camera cam-002)",
            (Remote("https://datasets.d2.mpi-inf.mpg.de/MPII-Cooking-2/MPII-Cooking-2-videos.tar.gz"),),
        ),
        VideoSource(
            "VideoMind-Dataset mirror",
            (Remote(hf_repo="yeliudev/VideoMind-Dataset", hf_path="tacos/videos.tar.gz", kind="hf"),),
            kind="hf",
        ),
    )

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        name = f"{split}.json"
        return [NativeFile(name, (Remote(f"{_2DTAN}/{name}", kind="mirror"),), KNOWN_SHA256.get(name))]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        path = files[f"{split}.json"]
        data = load_json(path)
        if not isinstance(data, dict):
            raise RecordRef(str(path), "top level").error("expected an object keyed by video file name")
        for key, value in data.items():
            yield RecordRef(str(path), key), (key, value)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        key, value = record
        fps = as_duration(require(value, "fps", ref), ref)
        num_frames = as_duration(require(value, "num_frames", ref), ref)
        duration = num_frames / fps
        timestamps = require(value, "timestamps", ref)
        sentences = require(value, "sentences", ref)
        if not isinstance(timestamps, list) or not isinstance(sentences, list):
            raise ref.error("'timestamps' and 'sentences' must be lists")
        if len(timestamps) != len(sentences):
            raise ref.error(f"{len(timestamps)} timestamps but {len(sentences)} sentences")
        video_id = key.rsplit(".", 1)[0] if key.endswith(".avi") else key
        rows = []
        for index, (window, sentence) in enumerate(zip(timestamps, sentences, strict=True)):
            item = RecordRef(ref.file, f"{key}[{index}]")
            windows, raw, flags = convert_windows([window], duration, item, ctx, units_per_second=fps)
            query, text_flags = query_text(sentence, item)
            rows.append(
                QueryRow(
                    uid=self.uid(split, video_id, index),
                    source=self.name,
                    split=split,
                    video_id=video_id,
                    video_path=self.video_candidates(video_id)[0],
                    duration=duration,
                    duration_source="num_frames_fps",
                    query=query,
                    query_raw=sentence,
                    windows=windows,
                    windows_raw=raw,
                    raw_unit="frame",
                    fps_native=fps,
                    provenance=ctx.provenance(ref.file, item.record),
                    flags=flags | text_flags,
                    extra={"num_frames": value["num_frames"]},
                )
            )
        return rows

    def video_candidates(self, video_id: str) -> list[str]:
        return [
            f"{video_id}-cam-002.avi",
            f"{video_id}-cam-002.mp4",
            f"{video_id}.avi",
            f"{video_id}.mp4",
        ]
