#!/usr/bin/env bash
# Installs Debian/Ubuntu packages for the scripts that need them: apt-install.sh "why" "what to do
# without apt-get" package...; with sudo when not root. Says what it installs, and why.
set -euo pipefail
why=$1
otherwise=$2
shift 2

echo "$why: installing $* from the distribution's packages (apt-get install $*)." >&2
if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-get is not available: $otherwise." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "$@" >/dev/null
