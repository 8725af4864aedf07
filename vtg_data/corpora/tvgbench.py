"""TVGBench (Time-R1's evaluation set, ``tvgbench.json``): 800 queries from five corpora.

Each item: ``path`` (the video file), ``question``, ``answer`` (the string ``"s-e"``), ``start`` and
``end`` (null, or the crop of the source video that is loaded, in seconds), ``duration`` (of the
loaded media), ``dataset_name`` (missing on the Ego4D-NLQ items), ``source`` (the annotation file
it came from), ``qsemtype``. Answers are relative to the crop: cropped items get ``clip_start``/
``clip_end`` and the ``crop_relative`` flag. Some answers end after ``duration`` (clamped,
flagged). Every row carries the ``tvgbench`` membership tag, plus the tag of the split it was
drawn from (Charades-STA test, ActivityNet val_2, TACoS val, HiREST val, Ego4D-NLQ val), the same
tag that corpus's own table carries, so leakage checks catch both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from vtg_data.corpora.base import (
    CorpusAdapter,
    NativeFile,
    ParseContext,
    Remote,
    convert_windows,
    iter_json_items,
    query_text,
    require,
)
from vtg_data.schema import QueryRow, RecordRef, as_duration, as_time

FILE = "tvgbench.json"
_COMMIT = "7f2b5944a0c35993da80634a459d5a48a3a5431e"
# The 800-item file at _COMMIT, and the redistributable copy of it without the 168 Ego4D-NLQ
# items (Ego4D's licence forbids sharing them; the other 632 items unchanged, 4-space indent).
KNOWN_SHA256 = ("76df764c0c856a196e2900b5366c81c83478bbd03d117e3b2f23b5b6bfbc59a2",
                "81931a7184bbcdbaa5b93c30967dbc52fd59339695cb3a31a2de50b8d616ff54")  # fmt: skip
_ANSWER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*$")
# Which corpus an item came from, from dataset_name or the source file name.
_ORIGINS = (("charades", "charades_sta"), ("anet", "activitynet_captions"), ("activitynet", "activitynet_captions"),
            ("tacos", "tacos"), ("nlq", "ego4d_nlq"), ("ego4d", "ego4d_nlq"), ("hirest", "hirest"))  # fmt: skip
# The split each origin's items were drawn from, as that corpus's adapter tags it: Charades-STA
# test, ActivityNet val_2 (``anet_test.json``), TACoS *val* (``tacos_val.json``), HiREST *val*
# (``hirest_formated_moment_evaluation_gt.json`` is HiREST's val-as-test truth), Ego4D-NLQ val.
_ORIGIN_BENCHMARK = {"charades_sta": "charades_sta_test", "activitynet_captions": "activitynet_val_2",
                     "tacos": "tacos_val", "hirest": "hirest_val", "ego4d_nlq": "ego4d_nlq_val"}  # fmt: skip


def origin_of(item: dict) -> str:
    text = f"{item.get('dataset_name') or ''} {PurePosixPath(str(item.get('source') or '')).name}".lower()
    return next((name for key, name in _ORIGINS if key in text), "unknown")


class TVGBench(CorpusAdapter):
    name = "tvgbench"
    splits = ("test",)
    task = "moment retrieval (evaluation)"
    licence = "Apache-2.0 (annotations); videos: their source corpora's terms"
    homepage = "https://github.com/xiaomi-research/time-r1"
    video_sources = ()

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        url = f"https://raw.githubusercontent.com/xiaomi-research/time-r1/{_COMMIT}/dataset/timer1/annotations/{FILE}"
        return [NativeFile(FILE, (Remote(url, kind="mirror"),), KNOWN_SHA256)]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        yield from iter_json_items(files[FILE])

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        index, item = record
        answer = require(item, "answer", ref)
        match = _ANSWER.match(str(answer))
        if not match:
            raise ref.error(f"answer {answer!r} is not an 's-e' range")
        duration = as_duration(require(item, "duration", ref), ref)
        windows, raw, flags = convert_windows([[float(match[1]), float(match[2])]], duration, ref, ctx)
        video_id = PurePosixPath(str(require(item, "path", ref))).stem
        start, end = item.get("start"), item.get("end")
        cropped = start is not None and end is not None
        if cropped:
            start, end = as_time(start, "start", ref), as_time(end, "end", ref)
            flags.add("crop_relative")
        raw_query = require(item, "question", ref)
        query, text_flags = query_text(raw_query, ref)
        origin = origin_of(item)
        return [QueryRow(uid=self.uid(split, index), source=self.name, split=split, video_id=video_id,
                         video_path=PurePosixPath(str(item["path"])).name, clip_start=start if cropped else None,
                         clip_end=end if cropped else None, duration=duration, duration_source="annotation",
                         query=query, query_raw=raw_query, windows=windows, windows_raw=raw, raw_unit="str_range",
                         flags=flags | text_flags, provenance=ctx.provenance(ref.file, ref.record),
                         benchmarks=sorted({"tvgbench", _ORIGIN_BENCHMARK.get(origin, "tvgbench")}),
                         extra={"origin": origin, "qsemtype": item.get("qsemtype"), "answer": answer})]  # fmt: skip
