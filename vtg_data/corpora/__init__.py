"""Corpus adapters and the registry that finds them by name."""

from __future__ import annotations

from vtg_data.corpora.activitynet_captions import ActivityNetCaptions
from vtg_data.corpora.base import CorpusAdapter, NativeFile, ParseContext, Remote, VideoSource
from vtg_data.corpora.charades_sta import CharadesSTA
from vtg_data.corpora.didemo import DiDeMo
from vtg_data.corpora.ego4d_nlq import Ego4DNLQ
from vtg_data.corpora.hirest import HiREST
from vtg_data.corpora.internvid_vtime import InternVidVTime
from vtg_data.corpora.nextgqa import NExTGQA
from vtg_data.corpora.queryd import QuerYD
from vtg_data.corpora.qvhighlights import QVHighlights
from vtg_data.corpora.rextime import ReXTime
from vtg_data.corpora.synthetic import Synthetic
from vtg_data.corpora.tacos import TACoS
from vtg_data.corpora.timelens import TimeLens100K, TimeLensBench
from vtg_data.corpora.tvg_r1 import TVGR1
from vtg_data.corpora.tvgbench import TVGBench
from vtg_data.corpora.youcook2 import YouCook2

REGISTRY: dict[str, type[CorpusAdapter]] = {
    cls.name: cls
    for cls in (CharadesSTA, ActivityNetCaptions, QVHighlights, TACoS, DiDeMo, HiREST, QuerYD, InternVidVTime, Ego4DNLQ,
                YouCook2, TVGBench, ReXTime, NExTGQA, TimeLensBench, TimeLens100K, TVGR1, Synthetic)
}  # fmt: skip


def catalogue() -> list[dict]:
    """Every corpus: task, licence, splits, benchmark splits and how its videos are obtained."""
    from vtg_data.mirrors import MIRRORS

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


class UnknownCorpus(ValueError):
    pass


def get_adapter(name: str) -> CorpusAdapter:
    try:
        return REGISTRY[name]()
    except KeyError:
        raise UnknownCorpus(
            f"unknown corpus {name!r}; known corpora: {', '.join(sorted(REGISTRY))}"
        ) from None


__all__ = [
    "REGISTRY",
    "catalogue",
    "CorpusAdapter",
    "NativeFile",
    "ParseContext",
    "Remote",
    "VideoSource",
    "get_adapter",
]
