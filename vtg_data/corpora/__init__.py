"""Corpus adapters and the registry that finds them by name."""

from __future__ import annotations

from vtg_data.corpora.activitynet_captions import ActivityNetCaptions
from vtg_data.corpora.base import CorpusAdapter, NativeFile, ParseContext, Remote, VideoSource
from vtg_data.corpora.charades_sta import CharadesSTA
from vtg_data.corpora.didemo import DiDeMo
from vtg_data.corpora.qvhighlights import QVHighlights
from vtg_data.corpora.synthetic import Synthetic
from vtg_data.corpora.tacos import TACoS

REGISTRY: dict[str, type[CorpusAdapter]] = {
    cls.name: cls for cls in (CharadesSTA, ActivityNetCaptions, QVHighlights, TACoS, DiDeMo, Synthetic)
}


class UnknownCorpus(ValueError):
    pass


def get_adapter(name: str) -> CorpusAdapter:
    try:
        return REGISTRY[name]()
    except KeyError:
        raise UnknownCorpus(
            f"unknown corpus {name!r}; known corpora: {', '.join(sorted(REGISTRY))}"
        ) from None


__all__ = ["REGISTRY", "CorpusAdapter", "NativeFile", "ParseContext", "Remote", "VideoSource", "get_adapter"]
