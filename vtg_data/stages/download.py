"""``vtg-data download``: native files -> validated, normalized Parquet tables for one corpus.

Layout under the root folder (all relative, nothing absolute is stored in the tables)::

    raw/<corpus>/<official file name>          native annotation files
    downloads/<corpus>/                         archives and partial downloads
    videos/<corpus>/...                         media files (``video_path`` is relative to this)
    normalized/<corpus>/<split>.parquet         one row per query (schema.QUERY_SCHEMA)
    normalized/<corpus>/videos.parquet          one row per video (schema.VIDEO_SCHEMA)
    normalized/<corpus>/manifest.json           inputs' hashes, options, counts, per split

A split whose inputs, options and video folder are unchanged since the last run is not parsed
again. A split that fails (missing file, bad record) is reported and leaves no new output, while
the other splits are still written.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vtg_data import __version__
from vtg_data.corpora import CorpusAdapter, ParseContext, get_adapter
from vtg_data.corpora.base import sha256_file
from vtg_data.corpora.didemo import CONSOLIDATION_RULES
from vtg_data.corpora.synthetic import SyntheticConfig
from vtg_data.data_root import DataRoot
from vtg_data.fetch.http import FetchError
from vtg_data.fetch.native import obtain_split_files
from vtg_data.fetch.videos import fetch_videos
from vtg_data.files import write_json
from vtg_data.schema import (
    SCHEMA_VERSION,
    QueryRow,
    RecordError,
    ValidationFailed,
    rows_to_table,
    write_table_atomic,
)
from vtg_data.stages.video_inventory import (
    apply_video_state,
    index_video_folder,
    probe_all,
    resolve_video,
    write_videos_table,
    written_video_ids,
)

MANIFEST = "manifest.json"
PROBE_CACHE = ".probe-cache.json"


@dataclass(frozen=True)
class DownloadConfig:
    """Options of ``vtg-data download``; saved in the manifest."""

    corpus: str
    root: Path
    splits: tuple[str, ...] = ()
    from_dir: Path | None = None
    videos: bool = False
    strict: bool = False
    verify: bool = True
    didemo_consolidation: str = "mode"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    mirror: str | None = None  # a Hugging Face mirror (vtg_data.mirrors.MIRRORS) to take every file from
    revision: str | None = None  # the mirror's commit, tag or branch (default: main, resolved once)

    def __post_init__(self) -> None:
        if self.revision and not self.mirror:
            raise ValueError("--revision pins a mirror: give --mirror too")
        if self.mirror and self.from_dir is not None:
            raise ValueError("--mirror and --from are alternatives: give one")
        if self.didemo_consolidation not in CONSOLIDATION_RULES:
            raise ValueError(f"didemo_consolidation must be one of {CONSOLIDATION_RULES}")
        if self.from_dir is not None and not Path(self.from_dir).is_dir():
            raise ValueError(f"--from folder does not exist: {self.from_dir}")

    def options(self) -> dict[str, Any]:
        """The options that change the normalized output (part of each split's fingerprint): strict
        mode and the options the corpus's adapter declares."""
        names = get_adapter(self.corpus).option_names
        return {"strict": self.strict, **{name: getattr(self, name) for name in names}}


@dataclass
class SplitSummary:
    split: str
    queries: int = 0
    videos: int = 0
    videos_missing: int = 0
    videos_corrupt: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    up_to_date: bool = False
    error: str | None = None


@dataclass
class DownloadResult:
    corpus: str
    out_dir: Path
    splits: list[SplitSummary]
    warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f"{s.split}: {s.error}" for s in self.splits if s.error]


def download(cfg: DownloadConfig, progress=None) -> DownloadResult:
    """Fetch, parse, validate and write one corpus. See the module docstring for the layout."""
    adapter = get_adapter(cfg.corpus)
    layout = DataRoot(cfg.root, cfg.corpus)
    for split in cfg.splits:
        adapter.check_split(split)
    if adapter.generated:
        present = adapter.generate(layout.raw, layout.videos, cfg.synthetic, progress)
        splits = [s for s in (cfg.splits or adapter.splits) if s in present]
    else:
        splits = list(cfg.splits or adapter.splits)

    summaries: dict[str, SplitSummary] = {s: SplitSummary(s) for s in splits}
    inputs: dict[str, dict[str, Path]] = {}
    session = None
    if cfg.mirror:
        from vtg_data.fetch.mirrors import MirrorSession

        session = MirrorSession.open(cfg.mirror, cfg.revision, layout.downloads / "hub-cache")
    for split in splits:
        try:
            inputs[split] = obtain_split_files(adapter, split, layout, from_dir=cfg.from_dir, verify=cfg.verify,
                                               progress=progress, session=session)  # fmt: skip
        except (FetchError, RecordError, OSError) as exc:
            summaries[split].error = str(exc)

    warnings: list[str] = []
    if cfg.videos and not adapter.generated:
        try:
            if session is not None:
                session.fetch_videos(adapter, layout.videos, progress)
            else:
                warnings += fetch_videos(adapter, layout, _annotated_video_ids(adapter, inputs, cfg),
                                         from_dir=cfg.from_dir, verify=cfg.verify, progress=progress)  # fmt: skip
        except FetchError as exc:  # the annotations are still normalized; the videos count as missing
            warnings.append(str(exc))
    video_index = index_video_folder(layout.videos)

    manifest = _load_json(layout.out / MANIFEST) or {}
    manifest_splits = manifest.get("splits", {})
    hashes_cache: dict[Path, str] = {}
    pending: dict[str, tuple[dict[str, Path], str]] = {}
    for split, files in inputs.items():
        for path in files.values():
            hashes_cache[path] = sha256_file(path)
        fingerprint = _fingerprint(adapter, split, files, hashes_cache, cfg, video_index)
        previous = manifest_splits.get(split, {})
        if previous.get("fingerprint") == fingerprint and (layout.out / f"{split}.parquet").is_file():
            summaries[split] = SplitSummary(split, **previous["counts"], up_to_date=True)
        else:
            pending[split] = (files, fingerprint)

    if pending or not (layout.out / "videos.parquet").is_file():
        probe_cache = _load_json(layout.out / PROBE_CACHE) or {}
        parsed: dict[str, list[QueryRow]] = {}
        for split, (files, _) in pending.items():
            ctx = _context(cfg, files, hashes_cache)
            try:
                parsed[split] = adapter.parse(split, files, ctx)
            except (ValidationFailed, RecordError) as exc:
                summaries[split].error = str(exc)
        # Every video of every split already written or parsed now goes into videos.parquet.
        video_ids, declared = written_video_ids(layout, [s for s in manifest_splits if s not in parsed])
        for rows in parsed.values():
            for row in rows:
                video_ids.setdefault(row.video_id, row.duration)
                declared.setdefault(row.video_id, row.video_path)
        resolved = {vid: resolve_video(adapter, vid, video_index, declared.get(vid)) for vid in video_ids}
        probes = probe_all(layout, resolved, probe_cache, progress)
        if adapter.duration_from_probe and parsed:
            durations = {vid: p.duration for vid, p in probes.items() if p.status == "ok" and p.duration}
            for split in list(parsed):
                files = pending[split][0]
                ctx = _context(cfg, files, hashes_cache, durations)
                parsed[split] = adapter.parse(split, files, ctx)
        for split, rows in parsed.items():
            apply_video_state(rows, resolved, probes)
            write_table_atomic(rows_to_table(rows), layout.out / f"{split}.parquet")
            summaries[split] = _summarize(split, rows)
            manifest_splits[split] = {
                "fingerprint": pending[split][1],
                "inputs": [
                    {"file": name, "sha256": hashes_cache[path]}
                    for name, path in sorted(pending[split][0].items())
                ],
                "options": cfg.options(),
                "counts": _counts(summaries[split]),
            }
        write_videos_table(layout, video_ids, resolved, probes)
        _write_json(layout.out / PROBE_CACHE, probe_cache)
        manifest = {
            "stage": "download",
            "toolkit_version": __version__,
            "schema_version": SCHEMA_VERSION,
            "corpus": cfg.corpus,
            "licence": adapter.licence,
            "homepage": adapter.homepage,
            "splits": dict(sorted(manifest_splits.items())),
            "videos": {
                "total": len(video_ids),
                "status": dict(Counter(p.status for p in probes.values())),
            },
        }
        if adapter.generated:
            manifest["synthetic"] = asdict(cfg.synthetic)
        _write_json(layout.out / MANIFEST, manifest)
    if session is not None:  # where the files came from, even when no split had to be parsed again
        manifest = _load_json(layout.out / MANIFEST) or {}
        if manifest and manifest.get("mirror") != session.record():
            manifest["mirror"] = session.record()
            _write_json(layout.out / MANIFEST, manifest)
    return DownloadResult(cfg.corpus, layout.out, [summaries[s] for s in splits], warnings)


# ---------------------------------------------------------------------------------------------
# Bookkeeping


def _annotated_video_ids(
    adapter: CorpusAdapter, inputs: dict[str, dict[str, Path]], cfg: DownloadConfig
) -> list[str]:
    """Video ids of every split that parses; a split that does not is reported later by the parse."""
    ids: set[str] = set()
    for split, files in inputs.items():
        try:
            ids.update(
                row.video_id for row in adapter.parse(split, files, ParseContext(options=cfg.options()))
            )
        except (ValidationFailed, RecordError):
            continue
    return sorted(ids)


def _context(
    cfg: DownloadConfig, files: dict[str, Path], hashes: dict[Path, str], durations=None
) -> ParseContext:
    return ParseContext(
        strict=cfg.strict,
        file_hashes={path.name: hashes[path] for path in files.values()},
        probe_durations=durations or {},
        options=cfg.options(),
    )


def _fingerprint(adapter, split, files, hashes, cfg: DownloadConfig, video_index) -> str:
    payload = {
        "toolkit": __version__,
        "schema": SCHEMA_VERSION,
        "corpus": adapter.name,
        "split": split,
        "inputs": sorted((name, hashes[path]) for name, path in files.items()),
        "options": cfg.options(),
        "videos": sorted(video_index.values()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _summarize(split: str, rows: list[QueryRow]) -> SplitSummary:
    flags = Counter(flag for row in rows for flag in row.flags)
    videos: dict[str, set[str]] = {}
    for row in rows:
        videos.setdefault(row.video_id, set()).update(f for f in row.flags if f.startswith("video_"))
    return SplitSummary(
        split,
        queries=len(rows),
        videos=len(videos),
        videos_missing=sum("video_missing" in f for f in videos.values()),
        videos_corrupt=sum("video_corrupt" in f for f in videos.values()),
        flags=dict(sorted(flags.items())),
    )


def _counts(summary: SplitSummary) -> dict[str, Any]:
    return {
        "queries": summary.queries,
        "videos": summary.videos,
        "videos_missing": summary.videos_missing,
        "videos_corrupt": summary.videos_corrupt,
        "flags": summary.flags,
    }


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: Any) -> None:
    write_json(path, data)
