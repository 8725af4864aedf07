"""A corpus's videos into ``videos/<corpus>/``: the first of its video sources that works.

Archive sources are downloaded (resumable) and extracted once (a marker records it); a local
folder (``--from``) is searched for the parts first. Per-video sources fetch each missing file; a
video that cannot be fetched is reported and later counted as missing, it does not stop the run.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from vtg_data.corpora.base import CorpusAdapter, VideoSource
from vtg_data.data_root import DataRoot
from vtg_data.fetch.archives import extract_archive
from vtg_data.fetch.http import FetchError, download_url, hf_endpoint, hf_token
from vtg_data.fetch.native import obtain_native_file, progress_callback


def fetch_videos(
    adapter: CorpusAdapter,
    root: DataRoot,
    video_ids: list[str],
    *,
    from_dir: Path | None = None,
    verify: bool = True,
    progress=None,
) -> list[str]:
    """Fetch the first video source that works; returns warnings (videos that could not be had)."""
    problems = []
    for source in adapter.video_sources:
        try:
            if source.per_video:
                return _fetch_per_video(adapter, root, video_ids, from_dir, verify, progress)
            if not source.parts:
                problems.append(f"  {source.description}: {source.note or 'no direct download'}")
                continue
            _fetch_archives(source, root, from_dir, progress)
            return []
        except FetchError as exc:
            problems.append(f"  {source.description}: {exc}")
    raise FetchError(f"could not fetch the {adapter.name} videos:\n" + "\n".join(problems))


def _fetch_archives(source: VideoSource, root: DataRoot, from_dir: Path | None, progress=None) -> None:
    marker = root.downloads / f".done-{hashlib.sha256(source.description.encode()).hexdigest()[:12]}"
    if marker.is_file():
        return
    parts = []
    for remote in source.parts:
        url = remote.resolved_url(hf_endpoint())
        name = PurePosixPath(url.split("?")[0]).name
        local = Path(from_dir) / name if from_dir else None
        if local is not None and local.is_file():
            parts.append(local)
            continue
        dest = root.downloads / name
        if not dest.is_file():
            token = hf_token() if remote.hf_repo else None
            download_url(
                url, dest, sha256=remote.sha256, token=token, on_progress=progress_callback(progress, name)
            )
        parts.append(dest)
    if all(p.name.endswith(".zip") for p in parts):
        for part in parts:
            extract_archive(part, root.videos)
    else:
        extract_archive(parts, root.videos)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(source.description)


def _fetch_per_video(
    adapter: CorpusAdapter,
    root: DataRoot,
    video_ids: list[str],
    from_dir: Path | None,
    verify: bool,
    progress=None,
) -> list[str]:
    urls = adapter.video_urls(
        sorted(video_ids),
        lambda native: obtain_native_file(native, root, from_dir=from_dir, verify=verify, progress=progress),
    )
    if not urls:
        raise FetchError("no download URL is known for any of the videos")
    todo = [(url, root.videos / name) for url, name in urls.values() if not (root.videos / name).is_file()]
    task = progress.add_task("downloading videos", total=len(todo)) if progress and todo else None
    failures: list[str] = []

    def fetch(item):
        url, dest = item
        try:
            download_url(url, dest, retries=2)
        except FetchError as exc:
            failures.append(str(exc))
        if task is not None:
            progress.advance(task)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fetch, todo))
    warnings = []
    if failures:
        warnings.append(f"{len(failures)} video(s) could not be downloaded, e.g. {sorted(failures)[0]}")
    unknown = len(video_ids) - len(urls)
    if unknown:
        warnings.append(f"{unknown} video(s) have no known download URL")
    return warnings
