#!/usr/bin/env bash
# Runs every test of wwwserve on a fresh machine: installs what is missing
# (scripts/setup.sh), builds once (debug, tests included), runs the Swift unit and
# harness tests, then the integration tests that drive real node processes and the
# real managed llama.cpp engine with the official `openai` Python client.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

scripts/setup.sh
echo "test: building (debug, with tests)"
swift build --build-tests
echo "test: swift unit and harness tests"
swift test --skip-build
echo "test: integration tests (real nodes, real model, openai client)"
WWWSERVE_BIN="$PWD/.build/debug/wwwserve" python3 -m pytest tests/integration -q
