"""TVG-R1's processed RL set (EasyR1 JSON, ``TVG_RL.json`` in ``RuizheChen/TVG_processed_data``).

A list of ``{dataset, problem, choices, video, video_length, gt_frame, ground_truth}``: ``problem``
is the full instruction the policy saw, not a bare query, so rows are flagged ``prompt_as_query``;
``gt_frame`` is the ``[s, e]`` window in seconds that its IoU reward uses, ``video_length`` the
duration, ``video`` the path under TVG-R1's data folders, ``dataset`` the source corpus (kept in
``extra`` with ``ground_truth``). Rows with non-empty ``choices`` are multiple-choice questions
whose ``ground_truth`` is an option letter graded as ``\boxed{X}``: they become
``task=grounded_qa`` with the options and the answer in ``extra`` (TVG-R1's loader appends the
options to the problem; the query here stays the problem alone). ``TVG_RL_val.json`` is the
``val`` split. Imported
rows keep the sample identity of the published set, so its difficulty selection can be compared
with ours or trained on as it is.
"""

from __future__ import annotations

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
from vtg_data.schema import QueryRow, RecordRef, as_duration

FILES = {"rl": "TVG_RL.json", "val": "TVG_RL_val.json"}


class TVGR1(CorpusAdapter):
    name = "tvg_r1"
    splits = ("rl", "val")
    task = "moment retrieval, grounded QA (published RL set)"
    licence = "see RuizheChen/TVG_processed_data; videos: their source corpora's terms"
    homepage = "https://github.com/zjuruizhechen/TVG-R1"

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        name = FILES[split]
        return [NativeFile(name, (Remote(hf_repo="RuizheChen/TVG_processed_data", hf_path=name, kind="hf"),))]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        yield from iter_json_items(files[FILES[split]])

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        index, item = record
        duration = as_duration(require(item, "video_length", ref), ref)
        windows, raw, flags = convert_windows(
            [require(item, "gt_frame", ref)], duration, ref, ctx, what="gt_frame"
        )
        problem = require(item, "problem", ref)
        choices = item.get("choices") or []
        if isinstance(choices, str):
            choices = [choices] if choices.strip() else []
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise ref.error(f"choices must be a list of strings, got {choices!r}")
        query, text_flags = query_text(problem, ref)
        extra = {"origin": item.get("dataset"), "ground_truth": item.get("ground_truth")}
        task = "moment_retrieval"
        if choices:  # graded as \boxed{letter}: a question with options, not a moment query
            task = "grounded_qa"
            extra |= {"options": choices, "answer": item.get("ground_truth")}
        video = str(require(item, "video", ref))
        return [QueryRow(uid=self.uid(split, index), source=self.name, split=split, task=task,
                         video_id=PurePosixPath(video).stem, video_path=video, duration=duration,
                         duration_source="annotation", query=query, query_raw=problem, windows=windows,
                         windows_raw=raw, raw_unit="sec", flags=flags | text_flags | {"prompt_as_query"},
                         provenance=ctx.provenance(ref.file, ref.record), extra=extra)]  # fmt: skip
