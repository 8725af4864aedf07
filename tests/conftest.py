from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from loopback import FileServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = Path(os.environ.get("VTG_SHARED_CORPORA", REPO.parent / "shared" / "corpora"))


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    if not SHARED_CORPORA.is_dir():
        pytest.skip(f"real annotation files not present at {SHARED_CORPORA}")
    return SHARED_CORPORA


@pytest.fixture()
def file_server():
    with FileServer() as server:
        yield server


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic corpus, downloaded once per test session."""
    from vtg_data.corpora.synthetic import SyntheticConfig
    from vtg_data.stages.download import DownloadConfig, download

    root = tmp_path_factory.mktemp("synthetic")
    download(
        DownloadConfig("synthetic", root, synthetic=SyntheticConfig(n_videos=4, seed=7, max_duration=20.0))
    )
    return root
