"""What ``vtg-data download --list`` shows: every corpus, its task, splits, benchmark splits,
how its videos are obtained, the mirrors that carry it and its licence."""

from __future__ import annotations

from vtg_data.corpora import REGISTRY
from vtg_data.fetch.mirrors import MIRRORS


def catalogue() -> list[dict]:
    """Every corpus: task, licence, splits, benchmark splits and how its videos are obtained."""
    by_repo = {repo: mirror for mirror, repo in MIRRORS.items()}
    entries = []
    for name, cls in sorted(REGISTRY.items()):
        automatic = [s for s in cls.video_sources if s.parts or s.per_video]
        adapter = cls()
        remotes = [r for split in cls.splits for f in adapter.native_files(split) for r in f.remotes]
        remotes += [r for source in cls.video_sources for r in source.parts]
        mirrors = sorted({by_repo[r.hf_repo] for r in remotes if r.hf_repo in by_repo})
        entries.append({
            "corpus": name, "task": cls.task, "licence": cls.licence, "splits": list(cls.splits),
            "benchmarks": dict(cls.benchmark_splits),
            "videos": "generated" if name == "synthetic" else ("automatic" if automatic else "manual"),
            "video_sources": [s.description + (f" ({s.note})" if s.note else "") for s in cls.video_sources],
            "mirrors": mirrors,
        })  # fmt: skip
    return entries
