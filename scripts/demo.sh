#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds the
# `wwwserve` binary and runs `wwwserve demo` (real nodes, the bundled SmolLM2-135M
# model, real prompts replayed at real trace arrival times). Extra arguments go to
# `wwwserve demo` (see `.build/debug/wwwserve demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

# The demo replays ../shared/data (see README): fail now, not after the build.
if [ -z "${WWWSERVE_SHARED_DATA:-}" ] && [ ! -f ../shared/data/prompts/mt_bench_questions.jsonl ] \
   && [[ " $* " != *" --data-dir "* ]] && [[ " $* " != *" --help "* ]]; then
  echo "demo: cannot find ../shared/data next to this clone; set WWWSERVE_SHARED_DATA=/path/to/shared/data" \
       "or pass --data-dir /path/to/shared/data" >&2
  exit 2
fi

scripts/setup.sh
echo "demo: building wwwserve (the first build takes several minutes)"
swift build --product wwwserve
exec .build/debug/wwwserve demo "$@"
