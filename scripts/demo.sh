#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds the
# `wwwserve` binary and runs `wwwserve demo` (real nodes, the bundled SmolLM2-135M
# model, real prompts replayed at real trace arrival times). Extra arguments go to
# `wwwserve demo` (see `.build/debug/wwwserve demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

scripts/setup.sh
echo "demo: building wwwserve"
swift build --product wwwserve
exec .build/debug/wwwserve demo "$@"
