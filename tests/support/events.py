"""The training tests' corpus."""

from pathlib import Path


def event_corpus(root: Path, n_videos: int, seed: int, min_duration: float, max_duration: float) -> Path:
    """Single-event synthetic videos (112x112) at ``root``: the training tests' corpus."""
    from vtg_data.corpora.synthetic import SyntheticConfig
    from vtg_data.stages.download import DownloadConfig, download

    config = SyntheticConfig(n_videos=n_videos, seed=seed, min_duration=min_duration, max_duration=max_duration,
                             width=112, height=112, layout="single_event")  # fmt: skip
    download(DownloadConfig("synthetic", root, synthetic=config))
    return root
