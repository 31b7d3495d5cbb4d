#!/usr/bin/env bash
# Publishes the triggerevents executable as it ships: compiled ahead of time (Native AOT) for this
# machine, into the directory given (default artifacts/publish). Native AOT links with clang and
# zlib; on Debian/Ubuntu they are installed from the distribution's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
output=${1:-artifacts/publish}

if ! command -v clang >/dev/null 2>&1 || [ ! -f /usr/include/zlib.h ]; then
  echo "Native AOT needs clang and zlib's headers: installing them from the distribution's packages (apt-get install clang zlib1g-dev)." >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get is not available: install clang and zlib's development headers." >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq clang zlib1g-dev >/dev/null
fi

dotnet publish src/TriggerEvents.Cli -c Release --use-current-runtime -o "$output" -nologo -clp:NoSummary
