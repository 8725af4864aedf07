"""Launching the CLI in several CPU processes, the way multi-GPU runs are launched."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def launch(args: list[str], out: Path, processes: int, config: str | None = None) -> list[dict]:
    """``vtg-data ARGS --out OUT`` in ``processes`` CPU processes: torchrun, or ``accelerate launch``
    with a shipped config (``scripts/accelerate/{config}.yaml``); returns the metrics lines."""
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    if config is not None:
        accelerate = shutil.which("accelerate", path=bin_dir)
        if accelerate is None:
            pytest.skip("accelerate's launcher is not installed next to this python")
        command = [accelerate, "launch", "--config_file", str(REPO / f"scripts/accelerate/{config}.yaml"),
                   "--num_processes", str(processes), "--mixed_precision", "no", str(REPO / "tests/support/cpu_fsdp_cli.py")]  # fmt: skip
    else:
        torchrun = shutil.which("torchrun", path=bin_dir)
        if torchrun is None:
            pytest.skip("torchrun is not installed next to this python")
        command = [torchrun, "--nproc_per_node", str(processes), "-m", "vtg_data.cli"]
    done = subprocess.run(
        [*command, *args, "--out", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
