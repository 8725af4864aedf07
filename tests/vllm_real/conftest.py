"""Fixtures for the tests against the real vLLM (run in the environment scripts/vllm-cpu/setup.sh
builds: ``.venv-vllm/bin/python -m pytest tests/vllm_real``). Elsewhere every test here skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from real_vllm import CPU_ENV

for key, value in CPU_ENV.items():
    os.environ.setdefault(key, value)

SMALL = ["--fps", "2", "--max-frames", "16", "--min-pixels", "3136", "--max-pixels", "12544"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Single-event videos (112x112, 8-14 s) and a 3-row table of them for the model stages."""
    import polars as pl
    from events import event_corpus

    root = event_corpus(
        tmp_path_factory.mktemp("vllm-corpus"), n_videos=6, seed=3, min_duration=8, max_duration=14
    )
    table = pl.read_parquet(root / "normalized/synthetic/train.parquet").head(3)
    table.write_parquet(root / "three.parquet")
    return root


@pytest.fixture(scope="session")
def qwen25(tmp_path_factory) -> Path:
    from vtg_data.lvlm.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("q25") / "model", size="s", seed=1)


@pytest.fixture(scope="session")
def qwen3(tmp_path_factory) -> Path:
    from vtg_data.lvlm.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("q3") / "model", family="qwen3-vl", size="s", seed=1)
