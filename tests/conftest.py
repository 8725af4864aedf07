from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))  # the helpers the tests import by name

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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny random Qwen2.5-VL, built offline once per session."""
    pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    from vtg_data.lvlm.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def xs_model(tmp_path_factory) -> Path:
    """The learning shape "xs" (seed 0) the trainer tests start from; read-only, built once."""
    pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    from vtg_data.lvlm.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("xs") / "model", size="xs", seed=0)


@pytest.fixture(scope="session")
def hf_backend(tiny_model):
    from vtg_data.lvlm.hf import HFBackend

    return HFBackend(tiny_model, batch_size=4)


@pytest.fixture()
def offline_hub_client(monkeypatch):
    """The loopback hub speaks plain LFS, not xet; huggingface_hub read its settings at import."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
