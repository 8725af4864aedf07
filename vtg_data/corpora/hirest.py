"""HiREST: moments (a query's relevant span in an instructional video) and their steps.

The split files map query text -> ``<ytid>.mp4`` -> ``{relevant, clip, v_duration, bounds, steps}``
with integer-second ``bounds`` and per-step ``absolute_bounds``. Two kinds of rows come out, told
apart by ``task``: ``moment_retrieval`` (query -> bounds) and ``step_grounding`` (step heading ->
its bounds). ``clip: false`` means the whole video is relevant: such records are no grounding
sample, so they become ``has_gt=false`` rows flagged ``whole_video_relevant`` (kept, never trained
on). The test split's ``bounds`` are ``[0, 1]`` placeholders: the real test moments and steps come
from ``formatted_moment_evaluation_gt.json`` (per video: ``captions`` = steps with start/end/sentence,
``bounds`` = one window per step); a test moment spans its first step's start to its last step's
end (flagged ``moment_from_steps``). Without that file, test rows are ``has_gt=false`` and flagged
``gt_placeholder``.
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

_COMMIT = "deffc169b4e8d51c1589d5512ad05da61e81bcee"
_REPO = f"https://raw.githubusercontent.com/j-min/HiREST/{_COMMIT}/data"
GT_FILE = "formatted_moment_evaluation_gt.json"
# The GitHub files at _COMMIT, then VideoMind-Dataset's re-indented copies of the same records.
KNOWN_SHA256 = {
    "all_data_train.json": ("3740548ae67c608ee64725d6030f7378bbdd2326e5d5479de0187e76944fc160",
                            "3148d89547fad1a08f57cf4751bc5e24de26fed876a95ccd6efd52b90a3cd57c"),
    "all_data_val.json": ("70d32c5fcdffe66cbf3c732dd274f03378da2082f50c9cec7e67705f529ecb4d",
                          "7b3dc7cebfa13e6648087081aa88f8d7290fca37e17a16271b4c86daddbaa2f3"),
    "all_data_test.json": ("a9951c8f6d43349d786f5c0cf929b6760f7158e04aa56a7ac2c8ea9487562b70",),
    GT_FILE: ("47fdaf57e5b43e22ca555d441c78310b98dd07b774b0252960ee70d781288c45",),
}  # fmt: skip


class HiREST(CorpusAdapter):
    name = "hirest"
    splits = ("train", "val", "test")
    task = "moment retrieval, step grounding"
    licence = "MIT (annotations); videos: YouTube terms"
    homepage = "https://github.com/j-min/HiREST"
    # val: HiREST's val-as-test truth, from which TVGBench takes its HiREST items
    benchmark_splits = {"val": "hirest_val", "test": "hirest_test"}
    video_sources = (
        VideoSource(
            "VideoMind-Dataset mirror (hirest/videos.tar.gz.00-.04)",
            tuple(
                Remote(
                    hf_repo="yeliudev/VideoMind-Dataset", hf_path=f"hirest/videos.tar.gz.{i:02d}", kind="hf"
                )
                for i in range(5)
            ),  # fmt: skip
            kind="hf",
        ),
        VideoSource("YouTube", note="download with the HiREST repository's script (videos may be gone)"),
    )

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        name = f"all_data_{split}.json"
        files = [NativeFile(name, (Remote(f"{_REPO}/splits/{name}", kind="mirror"),
                                   Remote(hf_repo="yeliudev/VideoMind-Dataset", hf_path=f"hirest/{name}", kind="hf")),
                            KNOWN_SHA256.get(name))]  # fmt: skip
        if split == "test":
            files.append(
                NativeFile(
                    GT_FILE,
                    (Remote(f"{_REPO}/evaluation/{GT_FILE}", kind="mirror"),),
                    KNOWN_SHA256[GT_FILE],
                    optional=True,
                )
            )
        return files

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        path = files[f"all_data_{split}.json"]
        data = load_json(path)
        if not isinstance(data, dict):
            raise RecordRef(str(path), "top level").error("expected an object keyed by query text")
        truth = None
        if split == "test" and GT_FILE in files:
            truth = load_json(files[GT_FILE])
            if not isinstance(truth, dict):
                raise RecordRef(str(files[GT_FILE]), "top level").error("expected an object keyed by video")
        for q_index, (query, videos) in enumerate(data.items()):
            if not isinstance(videos, dict):
                raise RecordRef(str(path), repr(query)).error("expected an object keyed by video file name")
            for key, record in videos.items():
                yield RecordRef(str(path), f"{query!r} / {key}"), (q_index, query, key, record, truth)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        q_index, query_raw, key, value, truth = record
        duration = as_duration(require(value, "v_duration", ref), ref)
        video_id = key[:-4] if key.endswith(".mp4") else key
        query, text_flags = query_text(query_raw, ref)
        base = {"source": self.name, "split": split, "video_id": video_id, "video_path": f"{video_id}.mp4",
                "duration": duration, "duration_source": "annotation", "raw_unit": "sec",
                "provenance": ctx.provenance(ref.file, ref.record)}  # fmt: skip
        moment = QueryRow(uid=self.uid(split, "moment", video_id, q_index), query=query, query_raw=query_raw,
                          windows=[], windows_raw=[], flags=set(text_flags), **base)  # fmt: skip
        if not require(value, "clip", ref):
            moment.has_gt = False
            moment.flags.add("whole_video_relevant")
            return [moment]
        if split != "test":
            windows, raw, flags = convert_windows([require(value, "bounds", ref)], duration, ref, ctx)
            moment.windows, moment.windows_raw, moment.flags = windows, raw, moment.flags | flags
            steps = [(s.get("heading"), s.get("absolute_bounds")) for s in require(value, "steps", ref)]
            return [moment, *self._steps(split, video_id, q_index, steps, duration, ref, ctx, base)]
        gt = None if truth is None else truth.get(key, truth.get(video_id))
        moment.windows_raw = [[float(x) for x in require(value, "bounds", ref)]]
        if gt is None:  # the split file's [0, 1] is a placeholder, not a moment
            moment.has_gt = False
            moment.flags.add("gt_placeholder")
            return [moment]
        captions = require(gt, "captions", RecordRef(ref.file, f"{GT_FILE} / {key}"))
        if not captions:
            raise ref.error(f"{GT_FILE} has no steps for {key}")
        steps = [(c.get("sentence"), [c.get("start"), c.get("end")]) for c in captions]
        span = [min(float(w[0]) for _, w in steps), max(float(w[1]) for _, w in steps)]
        windows, _, flags = convert_windows([span], duration, ref, ctx)
        moment.windows, moment.flags = windows, moment.flags | flags | {"moment_from_steps"}
        return [moment, *self._steps(split, video_id, q_index, steps, duration, ref, ctx, base)]

    def _steps(self, split, video_id, q_index, steps, duration, ref, ctx, base) -> list[QueryRow]:
        rows = []
        for index, (heading, bounds) in enumerate(steps):
            item = RecordRef(ref.file, f"{ref.record} / step {index}")
            if not isinstance(heading, str) or not heading.strip():
                raise item.error("step has no heading")
            windows, raw, flags = convert_windows([bounds], duration, item, ctx)
            text, text_flags = query_text(heading, item)
            rows.append(QueryRow(uid=self.uid(split, "step", video_id, q_index, index), task="step_grounding",
                                 query=text, query_raw=heading, windows=windows, windows_raw=raw,
                                 flags=flags | text_flags, extra={"moment_query_index": q_index},
                                 **{**base, "provenance": ctx.provenance(ref.file, item.record)}))  # fmt: skip
        return rows
