#!/usr/bin/env bash
# Makes sure a headless Chromium is there for the console's browser tests: Debian's package at
# /usr/bin/chromium (or CHROMIUM_PATH). The tests drive that one; nothing downloads a browser.
set -euo pipefail

if [ -n "${CHROMIUM_PATH:-}" ] && [ -x "$CHROMIUM_PATH" ]; then
  exit 0
fi
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
"$(dirname "$0")/apt-install.sh" "No Chromium found for the console's browser tests" \
  "install Chromium and set CHROMIUM_PATH to it" chromium
