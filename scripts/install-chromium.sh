#!/usr/bin/env bash
# Installs Debian's chromium when it is missing: the overview page's browser test drives it
# headless through the Chrome DevTools Protocol (operator/tests/overview.rs).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
