#!/usr/bin/env bash
# The whole pipeline on the synthetic corpus, on CPU, in minutes. Usage: scripts/demo.sh [ROOT]
set -euo pipefail
exec vtg-data demo --root "${1:-demo-output}"
