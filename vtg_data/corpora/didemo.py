"""DiDeMo: 5-second chunk indices with an inclusive end, 4 (sometimes 5 or 7) annotators.

``[a, b]`` means seconds ``[5a, min(5(b+1), duration)]``. The annotators' windows are
*alternatives*, kept in ``windows_alt`` (in seconds); ``windows`` holds one consolidated window and
the rule that made it is in the flags (``consolidated=mode`` or ``consolidated=mean``):

- ``mode`` (default): the window most annotators chose; ties go to the earliest annotator.
- ``mean``: VideoMind's rule, ``[round(5 * mean a), round(5 * (mean b + 1))]``.

The annotation has no duration. Videos over 30 s were cut to 30 s for annotation and
``num_segments`` (5 or 6) bounds the length, so ``5 * num_segments`` is used
(``duration_source = num_segments``, flag ``duration_estimated``) until a probe of the downloaded
video replaces it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vtg_data.corpora.base import (
    CorpusAdapter,
    NativeFile,
    ParseContext,
    Remote,
    VideoSource,
    as_pair,
    load_json,
    query_text,
    read_text,
    require,
)
from vtg_data.schema import QueryRow, RecordRef, as_time, normalize_window

_LM = "https://raw.githubusercontent.com/LisaAnne/LocalizingMoments/master/data"
_AWS = "https://multimedia-commons.s3-us-west-2.amazonaws.com/data/videos/mp4"
HASH_FILE = NativeFile("yfcc100m_hash.txt", (Remote(f"{_LM}/yfcc100m_hash.txt"),))
KNOWN_SHA256 = {"val_data.json": "b0364cc256553332feb19d46bcc4cd2b09774949fe6c0b25e7ed0ff3c6aefebb",
                "test_data.json": "1891c04ec48b3d364c739594b2b6413806b74bd9027c092d896e7ebb930ff1cd"}  # fmt: skip
CHUNK_SECONDS = 5.0
MAX_CHUNK = 5.0  # chunks 0-5: the first 30 s
CONSOLIDATION_RULES = ("mode", "mean")


class DiDeMo(CorpusAdapter):
    name = "didemo"
    splits = ("train", "val", "test")
    licence = "annotations BSD-2-Clause; each video has its own Creative Commons licence (video_licenses.txt)"
    homepage = "https://github.com/LisaAnne/LocalizingMoments"
    duration_from_probe = True
    option_names = ("didemo_consolidation",)
    video_sources = (
        VideoSource(
            "YFCC100M multimedia-commons bucket, one file per video keyed by yfcc100m_hash.txt",
            kind="official",
            note="13 videos are not on the bucket; the authors ship them separately",
            per_video=True,
        ),
        VideoSource(
            "VideoMind-Dataset mirror (split tar.gz, 2 parts)",
            tuple(
                Remote(
                    hf_repo="yeliudev/VideoMind-Dataset", hf_path=f"didemo/videos.tar.gz.{i:02d}", kind="hf"
                )
                for i in range(2)
            ),
            kind="hf",
        ),
    )

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        name = f"{split}_data.json"
        return [
            NativeFile(
                name,
                (
                    Remote(f"{_LM}/{name}"),
                    Remote(hf_repo="yeliudev/VideoMind-Dataset", hf_path=f"didemo/{name}", kind="hf"),
                ),
                KNOWN_SHA256.get(name),
            )
        ]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        path = files[f"{split}_data.json"]
        data = load_json(path)
        if not isinstance(data, list):
            raise RecordRef(str(path), "top level").error("expected a list of annotations")
        for index, record in enumerate(data):
            key = record.get("annotation_id", index) if isinstance(record, dict) else index
            yield RecordRef(str(path), f"annotation_id {key} (item {index})"), record

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        rule = ctx.options.get("didemo_consolidation", "mode")
        if rule not in CONSOLIDATION_RULES:
            raise ValueError(
                f"unknown DiDeMo consolidation rule {rule!r}; choose one of {CONSOLIDATION_RULES}"
            )
        annotation_id = require(record, "annotation_id", ref)
        video = require(record, "video", ref)
        sentence = require(record, "description", ref)
        times = require(record, "times", ref)
        num_segments = as_time(require(record, "num_segments", ref), "num_segments", ref)
        if not isinstance(times, list) or not times:
            raise ref.error(f"'times' must be a non-empty list, got {times!r}")
        if not isinstance(video, str) or not video:
            raise ref.error(f"'video' must be a file name, got {video!r}")

        flags: set[str] = {f"consolidated={rule}", "multi_annotator"}
        if video in ctx.probe_durations:
            duration, duration_source = ctx.probe_durations[video], "probe"
        else:
            duration, duration_source = CHUNK_SECONDS * num_segments, "num_segments"
            flags.add("duration_estimated")
        if len(times) != 4:
            flags.add(f"annotators_{len(times)}")
        if video.endswith("."):
            flags.add("video_name_bare_dot")

        chunks: list[tuple[float, float]] = []
        for item in times:
            a, b = as_pair(item, "annotator window", ref)
            chunk = (as_time(a, "start chunk", ref), as_time(b, "end chunk", ref))
            if any(c > MAX_CHUNK or not float(c).is_integer() for c in chunk):
                raise ref.error(
                    f"annotator window {[a, b]!r} is not a pair of chunk indices 0-{MAX_CHUNK:g} "
                    "(DiDeMo videos are annotated in six 5-second chunks)"
                )
            chunks.append(chunk)
        alternatives = []
        for a, b in chunks:
            window, window_flags = self._chunk_window(a, b, duration, ref, ctx)
            alternatives.append([window])
            flags |= window_flags
        if rule == "mode":
            counts = Counter(chunks)
            best = max(counts.values())
            a, b = next(c for c in chunks if counts[c] == best)
            window, window_flags = self._chunk_window(a, b, duration, ref, ctx)
        else:
            mean_a = sum(c[0] for c in chunks) / len(chunks)
            mean_b = sum(c[1] for c in chunks) / len(chunks)
            start, end = round(CHUNK_SECONDS * mean_a), round(CHUNK_SECONDS * (mean_b + 1))
            window, window_flags = normalize_window(
                float(start),
                float(end),
                duration,
                ref,
                strict=ctx.strict,
                raw=(mean_a, mean_b),
                what="mean chunk window",
            )
        flags |= window_flags
        query, text_flags = query_text(sentence, ref)
        parts = video.split("_")
        return [
            QueryRow(
                uid=self.uid(split, annotation_id),
                source=self.name,
                split=split,
                video_id=video,
                video_path=self.video_candidates(video)[0],
                parent_video_id=parts[1] if len(parts) >= 3 else None,
                duration=duration,
                duration_source=duration_source,
                query=query,
                query_raw=sentence,
                windows=[window],
                windows_alt=alternatives,
                windows_raw=[list(c) for c in chunks],
                raw_unit="chunk5s_inclusive",
                provenance=ctx.provenance(ref.file, ref.record),
                flags=flags | text_flags,
                extra={
                    "annotation_id": annotation_id,
                    "num_segments": record["num_segments"],
                    "dl_link": record.get("dl_link"),
                },
            )
        ]

    @staticmethod
    def _chunk_window(
        a: float, b: float, duration: float, ref: RecordRef, ctx: ParseContext
    ) -> tuple[list[float], set[str]]:
        """Inclusive chunk pair -> seconds. The last chunk ending past a short video is expected,
        so clamping the end to the duration is the definition here, not a repair."""
        flags: set[str] = set()
        if a > b:
            if ctx.strict:
                raise ref.error(f"inverted chunk window [{a:g}, {b:g}] (strict mode)")
            a, b = b, a
            flags.add("inverted_swapped")
        end = min(CHUNK_SECONDS * (b + 1), duration)
        window, window_flags = normalize_window(
            CHUNK_SECONDS * a, end, duration, ref, strict=ctx.strict, raw=(a, b), what="chunk window"
        )
        return window, flags | window_flags

    def video_candidates(self, video_id: str) -> list[str]:
        stem = video_id.rstrip(".")
        names = [video_id] if not video_id.endswith(".") else []
        names += [stem, f"{stem}.mp4", _mp4_name(video_id)]
        return list(dict.fromkeys(names))

    def video_urls(self, video_ids, obtain) -> dict[str, tuple[str, str]]:
        """The YFCC100M mp4 of each video: Flickr id (middle token of the name) -> hash -> URL."""
        hashes: dict[str, str] = {}
        for line in read_text(obtain(HASH_FILE)).splitlines():
            parts = line.split()
            if len(parts) >= 2:
                hashes[parts[0]] = parts[1]
        urls = {}
        for video_id in video_ids:
            parts = video_id.split("_")
            digest = hashes.get(parts[1]) if len(parts) >= 3 else None
            if digest and len(digest) >= 6:
                urls[video_id] = (f"{_AWS}/{digest[:3]}/{digest[3:6]}/{digest}.mp4", _mp4_name(video_id))
        return urls


def _mp4_name(video_id: str) -> str:
    """``owner_id_secret.mov`` -> ``owner_id_secret.mp4``; a bare trailing dot is dropped."""
    stem = video_id.rstrip(".")
    parts = stem.split("_")
    if len(parts) >= 3 and "." in parts[-1]:
        stem = stem.rsplit(".", 1)[0]
    return f"{stem}.mp4"
