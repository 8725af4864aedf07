"""QuerYD in the VideoMind-Dataset layout: captions and their times in Python pickles.

``raw_captions_combined_filtered-v2.pkl`` maps ``video-<id>`` to a list of captions, each a list
of tokens (joined with spaces into the query); ``times_captions_combined_filtered-v2.pkl`` maps
the same keys to ``[start, end]`` seconds per caption; ``{split}_list.txt`` names the split's
videos; ``durations.json`` holds durations keyed by the id without its ``video-`` prefix.

A pickle can run arbitrary code when loaded. These are read by a restricted unpickler that builds
only plain containers, strings and numbers. The real files are ``collections.defaultdict(list)``:
that one global is admitted and read as a plain dict (its ``list`` factory becomes an inert
marker that refuses to be called); every other global (class or function) a pickle names is
refused, so a tampered file fails with an error instead of executing anything.

VideoMind's folder has ``train_list.txt`` and ``val_list.txt`` only, so those are the splits.
140 of its listed videos have no entry in ``durations.json``: their rows are kept with the probed
duration when the video is on disk (``duration_source=probe``), else with the last caption's end
as a lower bound (``duration_source=windows_max``, flag ``duration_missing``). One train caption
starts at -0.1 s (clamped, ``start_clamped``).
"""

from __future__ import annotations

import io
import pickle
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
    read_text,
)
from vtg_data.schema import QueryRow, RecordError, RecordRef, as_duration

CAPTIONS = "raw_captions_combined_filtered-v2.pkl"
TIMES = "times_captions_combined_filtered-v2.pkl"
_MIRROR = "yeliudev/VideoMind-Dataset"
# VideoMind-Dataset's queryd/ files (read from a vendored copy of that folder); the captions
# pickle, over 4 MB, could not be read here and is not pinned.
KNOWN_SHA256 = {
    TIMES: "abc49906f3804229a45770856660ac37ecb403fdcd6c494874f8772df684c87b",
    "durations.json": "877d6e6b2e307751604907c17a4c14b01f777871aff746ac9ac720dabd764d7e",
    "train_list.txt": "2b9b523fd6a7de048257df09c5616266de9ddff97e358f3f1b7aff31770227c5",
    "val_list.txt": "7e62b91baef94c0c5302842a524b26d6f525c1d968e1575cb3452925b9e4675d",
}


class _Factory:
    """Stands for the ``default_factory`` a pickled defaultdict names; never called."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args: Any) -> Any:
        raise pickle.UnpicklingError(f"refused to call {self.name}: only plain data is allowed")


def _plain_dict(factory: Any = None) -> dict:
    """A ``collections.defaultdict`` comes back as a plain dict (its factory is dropped)."""
    if factory is not None and not isinstance(factory, _Factory):
        raise pickle.UnpicklingError("a defaultdict's factory must be a plain type")
    return {}


# The globals the real QuerYD pickles name: ``defaultdict(list)``. Nothing else is admitted.
_FACTORIES = {("builtins", n) for n in ("list", "dict", "set", "tuple", "str", "int", "float")}
_FACTORIES |= {("__builtin__", name) for _, name in _FACTORIES}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "defaultdict"):
            return _plain_dict
        if (module, name) in _FACTORIES:
            return _Factory(f"{module}.{name}")
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: only plain containers, strings and numbers "
            "(and collections.defaultdict, read as a dict) are allowed"
        )


def load_plain_pickle(path: Path) -> Any:
    """A pickle's content if it holds only plain data; a RecordError naming the file otherwise."""
    if not path.is_file():
        raise RecordError(path, "-", "file not found")
    try:
        return _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as exc:
        raise RecordError(path, "-", f"unsafe or malformed pickle: {exc}") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise RecordError(path, "-", f"malformed pickle: {exc}") from exc


class QuerYD(CorpusAdapter):
    name = "queryd"
    splits = ("train", "val")
    licence = "research use (QuerYD terms); videos: YouDescribe/YouTube"
    duration_from_probe = True  # only where durations.json lacks the video
    homepage = "https://www.robots.ox.ac.uk/~vgg/data/queryd/"
    video_sources = (
        VideoSource("VideoMind-Dataset mirror", (Remote(hf_repo=_MIRROR, hf_path="queryd/videos.tar.gz", kind="hf"),), kind="hf"),
    )  # fmt: skip

    def native_files(self, split: str) -> list[NativeFile]:
        self.check_split(split)
        names = (f"{split}_list.txt", CAPTIONS, TIMES, "durations.json")
        return [
            NativeFile(n, (Remote(hf_repo=_MIRROR, hf_path=f"queryd/{n}", kind="hf"),), KNOWN_SHA256.get(n))
            for n in names
        ]

    def iter_records(self, split: str, files: dict[str, Path]) -> Iterator[tuple[RecordRef, Any]]:
        listing = files[f"{split}_list.txt"]
        captions = load_plain_pickle(files[CAPTIONS])
        times = load_plain_pickle(files[TIMES])
        durations = load_json(files["durations.json"])
        for path, data in (
            (files[CAPTIONS], captions),
            (files[TIMES], times),
            (files["durations.json"], durations),
        ):
            if not isinstance(data, dict):
                raise RecordError(
                    path, "top level", f"expected a dict keyed by video, got {type(data).__name__}"
                )
        for lineno, line in enumerate(read_text(listing).splitlines(), start=1):
            key = line.strip()
            if key:
                ref = RecordRef(str(listing), f"line {lineno} ({key})")
                yield ref, (key, captions.get(key), times.get(key), durations)

    def record_rows(self, split: str, ref: RecordRef, record: Any, ctx: ParseContext) -> list[QueryRow]:
        key, captions, times, durations = record
        video_id = key[6:] if key.startswith("video-") else key
        if captions is None or times is None:
            raise ref.error(f"{key} is listed but has no {'captions' if captions is None else 'times'}")
        if len(captions) != len(times):
            raise ref.error(f"{len(captions)} captions but {len(times)} time windows")
        duration_flags: set[str] = set()
        if video_id in durations or key in durations:
            duration, duration_source = (
                as_duration(durations.get(video_id, durations.get(key)), ref),
                "annotation",
            )
        elif video_id in ctx.probe_durations:
            duration, duration_source = ctx.probe_durations[video_id], "probe"
        else:
            ends = [w[1] for w in times if isinstance(w, (list, tuple)) and len(w) == 2]
            if not ends or not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in ends):
                raise ref.error(
                    f"no duration for {video_id} in durations.json and no caption times to bound it"
                )
            duration, duration_source = max(0.0, float(max(ends))), "windows_max"
            duration_flags.add("duration_missing")
        rows = []
        for index, (tokens, window) in enumerate(zip(captions, times, strict=True)):
            item = RecordRef(ref.file, f"{ref.record}[{index}]")
            raw_query = " ".join(str(t) for t in tokens) if isinstance(tokens, (list, tuple)) else tokens
            query, text_flags = query_text(raw_query, item)
            windows, raw, flags = convert_windows([window], duration, item, ctx)
            rows.append(QueryRow(uid=self.uid(split, video_id, index), source=self.name, split=split,
                                 video_id=video_id, video_path=f"{video_id}.mp4", duration=duration,
                                 duration_source=duration_source, query=query, query_raw=raw_query, windows=windows,
                                 windows_raw=raw, raw_unit="sec", flags=flags | text_flags | duration_flags,
                                 provenance=ctx.provenance(ref.file, item.record)))  # fmt: skip
        if duration <= 0:  # no duration and every caption at 0 s: nothing to ground against
            for row in rows:
                row.has_gt = False
        return rows
