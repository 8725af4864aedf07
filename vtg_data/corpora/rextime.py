"""ReXTime (reasoning across time): grounded multiple-choice questions on ActivityNet val_2 and
QVHighlights val videos. ``rextime_{train,val}.json`` (and ``rextime_test_release.json`` without
answers) hold records ``{qid, vid, duration, question, options, ans, answer, span, source,
category}``: ``span`` is one ``[s, e]`` in seconds of the video ``vid`` (an ActivityNet
``v_<ytid>``, or a QVHighlights ``<ytid>_<start>_<end>`` clip); ``answer`` is the templated
"From <s0> to <e0>, <option>." text. Rows are ``task=grounded_qa`` with the question as the query
and the options, the correct letter and the category in ``extra``; val rows carry the
``rextime_val`` membership tag (the benchmark TVG-R1 reports).
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
    convert_windows,
    iter_json_items,
    iter_jsonl,
    query_text,
    require,
)
from vtg_data.schema import QueryRow, RecordRef, as_duration

FILES = {"train": "rextime_train.json", "val": "rextime_val.json", "test": "rextime_test_release.json"}
_REPO = "https://raw.githubusercontent.com/ReXTime/ReXTime/cb9f484110ef45299635d18626d5f8447f29f15d/data"
# rextime_val.json: the Hugging Face release, or GitHub's rextime_val.jsonl saved under that name.
KNOWN_SHA256 = {
    "rextime_val.json": ("5e05f9327a456d413453d178bea5e159c38a8e032832e75e6e9a15744eae48a9",
                         "48391bd67ffeafbdb4ebb540de24b673b897570dffb92d631a93dc696e4482e2"),
}  # fmt: skip


class ReXTime(CorpusAdapter):
    name = "rextime"
    splits = ("train", "val", "test")
    task = "grounded question answering"
    licence = "CC BY-NC-SA 4.0 (annotations); videos: ActivityNet and QVHighlights terms"
    homepage = "https://github.com/ReXTime/ReXTime"
    benchmark_splits = {"val": "rextime_val", "test": "rextime_test"}

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        name = FILES[split]
        remotes = (Remote(hf_repo="ReXTime/ReXTime", hf_path=name, kind="hf"),
                   Remote(hf_repo="yeliudev/VideoMind-Dataset", hf_path=f"rextime/{name}", kind="hf"))  # fmt: skip
        if split == "val":
            remotes = (Remote(f"{_REPO}/rextime_val.jsonl", kind="mirror"), *remotes)
        return [NativeFile(name, remotes, KNOWN_SHA256.get(name))]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        path = files[FILES[split]]
        head = path.read_bytes()[:64].lstrip()
        if head.startswith(b"["):
            for ref, (_, record) in iter_json_items(path):
                yield ref, record
        else:  # the repository ships the same records as JSON lines
            yield from iter_jsonl(path)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        qid = str(require(record, "qid", ref))
        vid = str(require(record, "vid", ref))
        duration = as_duration(require(record, "duration", ref), ref)
        raw_question = require(record, _first_present(record, ("question", "query"), ref), ref)
        question, text_flags = query_text(raw_question, ref)
        row = QueryRow(uid=self.uid(split, qid), source=self.name, split=split, task="grounded_qa",
                       video_id=vid, video_path=f"{vid}.mp4", duration=duration, duration_source="annotation",
                       query=question, query_raw=raw_question, windows=[], windows_raw=[], raw_unit="sec",
                       flags=text_flags, provenance=ctx.provenance(ref.file, ref.record),
                       extra={k: record[k] for k in ("options", "ans", "answer", "category", "source") if k in record})  # fmt: skip
        spans = record["span"] if "span" in record else record.get("relevant_windows")
        if "span" in record and spans is not None:
            spans = [spans]
        if not spans:
            row.has_gt = False
            return [row]
        if _withheld(spans, record):
            row.has_gt = False
            row.windows_raw = [[float(x) for x in spans[0]]]
            row.flags.add("gt_placeholder")
            return [row]
        row.windows, row.windows_raw, flags = convert_windows(spans, duration, ref, ctx, what="span")
        row.flags |= flags
        return [row]


def _first_present(record: Any, keys: tuple[str, ...], ref: RecordRef) -> str:
    """The first of ``keys`` the record has (the HF JSON says ``question``, the GitHub JSONL ``query``)."""
    if isinstance(record, dict):
        for key in keys:
            if key in record:
                return key
    return keys[0]  # ``require`` then names the missing field


def _withheld(spans: list, record: dict) -> bool:
    """The test release's stand-in for withheld truth: every span ``[0, 0]`` and no answer letter."""
    zero = all(isinstance(s, (list, tuple)) and len(s) == 2 and s[0] == 0 and s[1] == 0 for s in spans)
    return zero and not record.get("ans")
