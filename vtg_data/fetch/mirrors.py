"""Hugging Face dataset mirrors of the corpora, fetched at a pinned revision.

``vtg-data download CORPUS --mirror videomind --revision SHA`` resolves the revision (a commit, a
tag or a branch) to one commit once, then takes every annotation file and video archive part from
that commit, so a rerun months later reads the same bytes; the commit goes into the manifest. The
listing comes from ``huggingface_hub``; files are fetched from the commit's resolve URL by the
toolkit's own downloader, which keeps a partial file across runs and continues it with a Range
request (``huggingface_hub`` drops partial files when a call fails) and checks LFS files against
the SHA-256 in the listing.

Which files a mirror holds is declared by the adapters (``Remote(hf_repo=..., hf_path=...)``); a
mirror here is only a short name for a repository. Video archives split into parts
(``videos.tar.gz.00``, ``.01``, ... or ``chunk_1.zip``, ``chunk_2.zip``, ...) are found in the
commit's file listing, so the part count is the mirror's, not a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vtg_data.corpora.base import CorpusAdapter, NativeFile, VideoSource
from vtg_data.fetch.archives import extract_archive
from vtg_data.fetch.http import FetchError, download_url, hf_endpoint, hf_token
from vtg_data.files import copy_file

MIRRORS: dict[str, str] = {
    "videomind": "yeliudev/VideoMind-Dataset",
    "grounded-videollm": "WHB139426/Grounded-VideoLLM",
    "lmms-lab": "lmms-lab/charades_sta",
    "timelens": "TencentARC/TimeLens-Bench",
    "timelens-100k": "TencentARC/TimeLens-100K",
    "tvg-r1": "RuizheChen/TVG_processed_data",
}
RETRIES = 4
RETRY_BACKOFF = 1.0  # seconds, doubled per retry


def part_pattern(path: str) -> re.Pattern:
    """The declared first part of an archive -> a pattern for all its parts in a listing."""
    escaped = re.escape(path)
    digits = list(re.finditer(r"\d+", escaped))
    if digits and (path.rsplit(".", 1)[-1].isdigit() or re.search(r"_\d+\.zip$", path)):
        last = digits[-1]
        return re.compile(escaped[: last.start()] + r"\d+" + escaped[last.end() :] + "$")
    return re.compile(escaped + r"(\.\d+)?$")


def _part_order(path: str) -> tuple[int, str]:
    numbers = re.findall(r"\d+", PurePosixPath(path).name)
    return (int(numbers[-1]) if numbers else -1, path)


@dataclass
class MirrorSession:
    """One mirror at one commit: the listing is read once, files come from that commit only."""

    name: str
    repo: str
    revision: str
    commit: str
    cache: Path
    files: dict[str, str | None] = field(default_factory=dict)  # path -> LFS sha256 (None: a git file)

    @classmethod
    def open(cls, name: str, revision: str | None, cache: Path) -> MirrorSession:
        if name not in MIRRORS:
            raise ValueError(f"unknown mirror {name!r}; mirrors: {', '.join(sorted(MIRRORS))}")
        from huggingface_hub import HfApi, RepoFile
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

        repo = MIRRORS[name]
        api = HfApi(endpoint=hf_endpoint(), token=hf_token())
        try:
            info = api.dataset_info(repo, revision=revision or "main")
            files = {
                entry.path: (entry.lfs.sha256 if getattr(entry, "lfs", None) else None)
                for entry in api.list_repo_tree(repo, repo_type="dataset", revision=info.sha, recursive=True)
                if isinstance(entry, RepoFile)
            }
        except RevisionNotFoundError as exc:
            raise FetchError(f"{repo} has no revision {revision!r}") from exc
        except RepositoryNotFoundError as exc:
            raise FetchError(f"{repo}: repository not found (or private without a token)") from exc
        except (HfHubHTTPError, OSError) as exc:
            raise FetchError(f"{repo}: {exc}") from exc
        return cls(name, repo, revision or "main", info.sha, cache, files)

    def record(self) -> dict[str, str]:
        return {"name": self.name, "repo": self.repo, "revision": self.revision, "commit": self.commit}

    def _download(self, path: str, progress=None) -> Path:
        """The file at the pinned commit, under ``cache/<commit>/<path>`` (kept: a rerun reads it)."""
        import urllib.parse

        dest = self.cache / self.commit / path
        if dest.is_file():
            return dest
        url = f"{hf_endpoint()}/datasets/{self.repo}/resolve/{self.commit}/{urllib.parse.quote(path)}"
        update = None
        if progress is not None:
            task = progress.add_task(PurePosixPath(path).name, total=None, unit="bytes")

            def update(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

        return download_url(url, dest, sha256=self.files.get(path), token=hf_token(), retries=RETRIES,
                            backoff=RETRY_BACKOFF, on_progress=update)  # fmt: skip

    def native_file(self, native: NativeFile, dest: Path) -> Path:
        """The mirror's copy of an annotation file, copied atomically to ``dest``."""
        paths = [r.hf_path for r in native.remotes if r.hf_repo == self.repo and r.hf_path]
        if not paths:
            raise FetchError(f"the {self.name} mirror ({self.repo}) does not carry {native.name}")
        present = [p for p in paths if p in self.files]
        if not present:
            raise FetchError(f"{paths[0]} is not in {self.repo} at {self.commit[:12]}")
        cached = self._download(present[0])
        return copy_file(cached, dest)

    def video_source(self, adapter: CorpusAdapter) -> VideoSource:
        for source in adapter.video_sources:
            if source.parts and all(p.hf_repo == self.repo for p in source.parts):
                return source
        raise FetchError(f"the {self.name} mirror ({self.repo}) has no videos of {adapter.name}")

    def video_parts(self, source: VideoSource) -> list[str]:
        pattern = part_pattern(source.parts[0].hf_path or "")
        parts = sorted((f for f in self.files if pattern.match(f)), key=_part_order)
        if not parts:
            raise FetchError(f"no {source.parts[0].hf_path} parts in {self.repo} at {self.commit[:12]}")
        return parts

    def fetch_videos(self, adapter: CorpusAdapter, target: Path, progress=None) -> list[str]:
        """Download every part (resumable), then extract: zips one by one, tar parts joined."""
        source = self.video_source(adapter)
        marker = target.parent.parent / "downloads" / adapter.name / f".done-{self.commit[:12]}-{self.name}"
        if marker.is_file():
            return []
        names = self.video_parts(source)
        task = (
            progress.add_task(f"{self.name}: {len(names)} video archive part(s)", total=len(names))
            if progress
            else None
        )
        local = []
        for name in names:
            local.append(self._download(name, progress))
            if task is not None:
                progress.advance(task)
        if all(p.suffix == ".zip" for p in local):
            for part in local:
                extract_archive(part, target)
        else:
            extract_archive(local, target)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{self.repo}@{self.commit}: {', '.join(names)}\n")
        return names
