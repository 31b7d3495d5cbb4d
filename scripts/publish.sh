#!/usr/bin/env bash
# Publishes the triggerevents executable as it ships: compiled ahead of time (Native AOT) for this
# machine, into the directory given (default artifacts/publish). Native AOT links with clang and
# zlib; on Debian/Ubuntu they are installed from the distribution's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
output=${1:-artifacts/publish}

if ! command -v clang >/dev/null 2>&1 || [ ! -f /usr/include/zlib.h ]; then
  ./scripts/apt-install.sh "Native AOT links with clang and zlib" "install clang and zlib's development headers" clang zlib1g-dev
fi

dotnet publish src/TriggerEvents.Cli -c Release --use-current-runtime -o "$output" -nologo -clp:NoSummary
