"""Charades-STA: ``VID start end##sentence`` lines; durations from the Charades CSV ``length``.

The widely used files are the cleaned TALL release as copied into 2D-TAN. About 2,400 lines end
after the CSV length (by at most ~1.5 s) and four train lines are inverted: both are repaired and
flagged, never dropped.
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
    VideoSource,
    convert_windows,
    query_text,
    read_text,
)
from vtg_data.schema import QueryRow, RecordError, RecordRef, as_duration

_2DTAN = "https://raw.githubusercontent.com/microsoft/2D-TAN/master/data/Charades-STA"
_AI2 = "https://ai2-public-datasets.s3-us-west-2.amazonaws.com/charades"

KNOWN_SHA256 = {
    "charades_sta_test.txt": "fab341679c20b0917173dcffffde367a71113fe63f3a645558cef2ebfbfefb55",
    "Charades_v1_test.csv": "8b8b207b55fb95b949018027f69d83bd46cd844d15834f8f592ee8e7446173eb",
}


class CharadesSTA(CorpusAdapter):
    name = "charades_sta"
    splits = ("train", "test")
    licence = "Charades licence (non-commercial research; include license.txt)"
    benchmark_splits = {"test": "charades_sta_test"}
    homepage = "https://prior.allenai.org/projects/charades"
    video_sources = (
        VideoSource("Charades videos, 480p", (Remote(f"{_AI2}/Charades_v1_480.zip"),)),
        VideoSource(
            "lmms-lab mirror of the 480p videos (4 zip parts, each a complete zip)",
            tuple(
                Remote(hf_repo="lmms-lab/charades_sta", hf_path=f"Charades_v1_480_part_{i}.zip", kind="hf")
                for i in range(1, 5)
            ),
            kind="hf",
        ),
    )

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        txt, csv_name = f"charades_sta_{split}.txt", f"Charades_v1_{split}.csv"
        return [
            NativeFile(txt, (Remote(f"{_2DTAN}/{txt}", kind="mirror"),), KNOWN_SHA256.get(txt)),
            NativeFile(
                csv_name,
                (
                    Remote(f"{_AI2}/Charades.zip", member=f"Charades/{csv_name}"),
                    Remote(f"{_2DTAN}/{csv_name}", kind="mirror"),
                ),
                KNOWN_SHA256.get(csv_name),
            ),
        ]

    def _lengths(self, path: Path) -> dict[str, tuple[Any, RecordRef]]:
        reader = csv.DictReader(io.StringIO(read_text(path)))
        if not reader.fieldnames or "id" not in reader.fieldnames or "length" not in reader.fieldnames:
            raise RecordError(path, "header", f"expected columns 'id' and 'length', got {reader.fieldnames}")
        lengths: dict[str, tuple[Any, RecordRef]] = {}
        for row in reader:
            ref = RecordRef(str(path), f"line {reader.line_num}")
            lengths[row["id"]] = (row["length"], ref)
        return lengths

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        txt = files[f"charades_sta_{split}.txt"]
        lengths = self._lengths(files[f"Charades_v1_{split}.csv"])
        for lineno, line in enumerate(read_text(txt).splitlines(), start=1):
            if line.strip():
                yield RecordRef(str(txt), f"line {lineno}"), (lineno, line, lengths)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        lineno, line, lengths = record
        head, sep, sentence = line.partition("##")
        parts = head.split()
        if not sep or len(parts) != 3:
            raise ref.error(f"expected 'VID start end##sentence', got {line!r}")
        video_id, start_text, end_text = parts
        try:
            start, end = float(start_text), float(end_text)
        except ValueError as exc:
            raise ref.error(f"times are not numbers: {start_text!r} {end_text!r}") from exc
        if video_id not in lengths:
            raise ref.error(f"video {video_id} has no row in Charades_v1_{split}.csv (no duration)")
        length_text, length_ref = lengths[video_id]
        try:
            duration = as_duration(float(length_text), length_ref)
        except ValueError as exc:
            if isinstance(exc, RecordError):
                raise
            raise length_ref.error(f"length is not a number: {length_text!r}") from exc
        windows, raw, flags = convert_windows([[start, end]], duration, ref, ctx)
        query, text_flags = query_text(sentence, ref)
        return [
            QueryRow(
                uid=self.uid(split, f"L{lineno:05d}"),
                source=self.name,
                split=split,
                video_id=video_id,
                video_path=f"{video_id}.mp4",
                duration=duration,
                duration_source="csv",
                query=query,
                query_raw=sentence,
                windows=windows,
                windows_raw=raw,
                raw_unit="sec",
                provenance=ctx.provenance(ref.file, ref.record),
                flags=flags | text_flags,
            )
        ]
