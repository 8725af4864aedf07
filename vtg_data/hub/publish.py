"""``vtg-data push-to-hub``: upload a hub-layout folder as a new, immutable version.

Order of work, each step only after the previous succeeded:

1. refuse an existing tag ``vX.Y.Z`` (versions are never moved or deleted);
2. compare every local file with the repo's ``main`` (SHA-256 for LFS files, the git blob id for
   the others) and upload only what changed, in several commits so an interrupted upload resumes
   where it stopped; shards no longer produced are deleted; the card and metadata go in the last
   commit, so a half-finished upload never shows a new card over old data;
3. tag the final commit ``vX.Y.Z``.

The token comes from ``HF_TOKEN`` or the login file (``huggingface_hub`` finds it) and is never
printed.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

LAST = ("README.md", "vtg_data.json")


class PublishError(RuntimeError):
    pass


@dataclass
class PublishResult:
    repo: str
    tag: str
    commit: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    commits: int = 0


def _digests(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def publish_folder(
    folder: Path,
    repo: str,
    version: str,
    *,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    files_per_commit: int = 50,
) -> PublishResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    folder = Path(folder)
    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    tag = f"v{version}"
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    refs = api.list_repo_refs(repo, repo_type="dataset")
    if any(t.name == tag for t in refs.tags):
        raise PublishError(f"{repo}: tag {tag} already exists; a version is never moved, publish a new one")
    remote: dict[str, set[str]] = {}
    for entry in api.list_repo_tree(repo, repo_type="dataset", recursive=True, revision="main"):
        if getattr(entry, "blob_id", None) is not None:  # a file, not a folder
            ids = {entry.blob_id}
            if entry.lfs is not None:
                ids.add(entry.lfs.sha256)
            remote[entry.path] = ids
    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    result = PublishResult(repo, tag, "")
    changed = []
    for rel in local:
        sha256, git_oid = _digests(folder / rel)
        if remote.get(rel, set()) & {sha256, git_oid}:
            result.unchanged.append(rel)
        else:
            changed.append(rel)
    result.deleted = sorted(p for p in remote if p.startswith("data/") and p not in local)
    first = [p for p in changed if p not in LAST]
    batches = [first[i : i + files_per_commit] for i in range(0, len(first), files_per_commit)]
    final = [p for p in changed if p in LAST]
    if final or result.deleted or not batches:
        batches.append(final)
    for index, batch in enumerate(batches, start=1):
        operations = [
            CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in batch
        ]
        if index == len(batches):
            operations += [CommitOperationDelete(path_in_repo=rel) for rel in result.deleted]
        if not operations:
            continue
        api.create_commit(repo, operations=operations, repo_type="dataset", revision="main",
                          commit_message=f"{tag}: part {index} of {len(batches)}")  # fmt: skip
        result.uploaded += batch
        result.commits += 1
    head = api.repo_info(repo, repo_type="dataset", revision="main").sha
    api.create_tag(repo, tag=tag, revision=head, repo_type="dataset", tag_message=f"vtg-data release {tag}")
    result.commit = head
    return result


def remote_card(repo: str, *, token: str | None = None, endpoint: str | None = None) -> str | None:
    """The dataset card on the repo's main branch, or None (no repo, no card, or unreachable)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint or os.environ.get("HF_ENDPOINT") or None, token=token)
    try:
        path = api.hf_hub_download(repo, "README.md", repo_type="dataset", revision="main")
    except Exception:  # a new repo has no card; the history then starts here
        return None
    return Path(path).read_text()
