"""One data root, one layout, one meaning of ``--video-root``.

    <root>/raw/<corpus>/<official file names>     native annotation files
    <root>/downloads/<corpus>/                     archives, partial downloads, a mirror's cache
    <root>/videos/<corpus>/...                     media files
    <root>/normalized/<corpus>/<split>.parquet     one row per query (+ videos.parquet, manifest.json)

A row's ``video_path`` is relative to its corpus's folder under ``videos/``, so the video of any
row is ``video_root / row["source"] / row["video_path"]`` where ``video_root`` is ``<root>/videos``:
the one meaning ``--video-root`` has in every command, and why a table mixing several sources
works everywhere. Every place that needs a path of this layout asks this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataRoot:
    """The folders of one corpus under a data root."""

    root: Path
    corpus: str

    @property
    def raw(self) -> Path:
        return Path(self.root) / "raw" / self.corpus

    @property
    def downloads(self) -> Path:
        return Path(self.root) / "downloads" / self.corpus

    @property
    def video_root(self) -> Path:
        return Path(self.root) / "videos"

    @property
    def videos(self) -> Path:
        return self.video_root / self.corpus

    @property
    def out(self) -> Path:
        return Path(self.root) / "normalized" / self.corpus


def video_file(video_root: str | Path, source: str, video_path: str) -> Path:
    """The file of a row's video: ``video_root / source / video_path``."""
    return Path(video_root) / source / video_path


def table_video_root(table: str | Path) -> Path:
    """The ``videos/`` folder of a table written at ``<root>/normalized/<corpus>/<split>.parquet``."""
    return Path(table).resolve().parent.parent.parent / "videos"
