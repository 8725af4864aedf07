"""A corpus's native annotation files, under their official names in ``raw/<corpus>/``.

Each file comes from a local folder (``--from``: the file itself, anywhere below, or an official
archive that holds it), from a mirror session pinned to one commit, or from its remotes in order;
a file whose release is fixed is checked against its known SHA-256 sums wherever it comes from.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from vtg_data.corpora.base import CorpusAdapter, NativeFile, sha256_file
from vtg_data.data_root import DataRoot
from vtg_data.fetch.archives import extract_archive, find_member
from vtg_data.fetch.http import FetchError, download_url, hf_endpoint, hf_token, redact
from vtg_data.files import copy_file


def obtain_split_files(
    adapter: CorpusAdapter,
    split: str,
    root: DataRoot,
    *,
    from_dir: Path | None = None,
    verify: bool = True,
    progress=None,
    session=None,
) -> dict[str, Path]:
    """Each native file of the split, fetched or copied into ``raw/`` if not there yet; with a
    mirror session, always the mirror commit's copy. Optional files that cannot be had are left out."""
    files: dict[str, Path] = {}
    for native in adapter.native_files(split):
        try:
            if session is not None:
                files[native.name] = session.native_file(native, root.raw / native.name)
                continue
            files[native.name] = obtain_native_file(
                native, root, from_dir=from_dir, verify=verify, progress=progress, hint=adapter.files_hint
            )
        except FetchError:
            if native.optional:
                continue
            raise
    if not files:
        raise FetchError(f"none of the files of split {split} could be obtained")
    return files


def obtain_native_file(
    native: NativeFile,
    root: DataRoot,
    *,
    from_dir: Path | None = None,
    verify: bool = True,
    progress=None,
    hint: str = "",
) -> Path:
    dest = root.raw / native.name
    expected = native.accepted_sums if verify else ()
    if dest.is_file() and (not expected or sha256_file(dest) in expected):
        return dest
    if from_dir is not None:
        return _copy_from_local(native, Path(from_dir), dest, expected)
    attempts = []
    for remote in native.remotes:
        url = remote.resolved_url(hf_endpoint())
        token = hf_token() if remote.hf_repo else None
        try:
            if remote.member:
                archive = root.downloads / PurePosixPath(url.split("?")[0]).name
                if not archive.is_file():
                    download_url(
                        url,
                        archive,
                        sha256=remote.sha256,
                        on_progress=progress_callback(progress, archive.name),
                    )
                extract_member(archive, remote.member, dest, expected)
            else:
                download_url(
                    url,
                    dest,
                    sha256=expected,
                    token=token,
                    on_progress=progress_callback(progress, native.name),
                )
            return dest
        except FetchError as exc:
            attempts.append(f"  {redact(url)}: {exc}")
    where = "\n".join(attempts) or f"  (no download location is known for it{'; ' + hint if hint else ''})"
    raise FetchError(f"could not obtain {native.name}:\n{where}")


def _copy_from_local(native: NativeFile, folder: Path, dest: Path, expected: tuple[str, ...]) -> Path:
    direct = folder / native.name
    found = direct if direct.is_file() else next(iter(sorted(folder.rglob(native.name))), None)
    if found is not None:
        if expected and sha256_file(found) not in expected:
            raise FetchError(
                f"{found}: checksum mismatch: expected sha256 {' or '.join(expected)}, got {sha256_file(found)} "
                "(pass --no-verify to accept a different release)"
            )
        return copy_file(found, dest)
    for remote in native.remotes:  # an official archive that holds the file
        if remote.member:
            archive = folder / PurePosixPath(remote.resolved_url().split("?")[0]).name
            if archive.is_file():
                extract_member(archive, remote.member, dest, expected)
                return dest
    raise FetchError(f"{native.name} is not in {folder} (looked for the file and its archives)")


def extract_member(archive: Path, member: str, dest: Path, expected: tuple[str, ...]) -> None:
    """One file of an archive, to ``dest``, checked against ``expected`` sums when given."""
    target = dest.parent / f".extract-{dest.name}"
    shutil.rmtree(target, ignore_errors=True)
    wanted_name = PurePosixPath(member)
    try:
        written = extract_archive(
            archive, target, wanted=lambda rel: rel == wanted_name or rel.name == wanted_name.name
        )
        match = find_member([p.relative_to(target) for p in written], member)
        if match is None:
            raise FetchError(f"{archive.name} does not contain {member}")
        source = target / match
        if expected and sha256_file(source) not in expected:
            raise FetchError(
                f"{archive.name}:{member}: checksum mismatch: expected sha256 {' or '.join(expected)}"
            )
        source.replace(dest)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def progress_callback(progress, label: str):
    """A ``download_url`` progress hook drawing one rich bar (None without a progress display)."""
    if progress is None:
        return None
    task = None

    def update(done: int, total: int | None) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task(f"downloading {label}", total=total, unit="bytes")
        progress.update(task, completed=done, total=total)

    return update
