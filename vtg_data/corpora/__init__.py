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
    "CorpusAdapter",
    "NativeFile",
    "ParseContext",
    "Remote",
    "VideoSource",
    "get_adapter",
]
