#!/usr/bin/env bash
# Installs promtool (from Debian's prometheus package, unpacked, so no server is installed or
# started) into ~/.cache/hort/tools/bin and prints its path. A second run only prints the path.
set -euo pipefail
dest="${HORT_CACHE:-$HOME/.cache/hort}/tools"
bin="$dest/bin/promtool"
if [[ ! -x "$bin" ]]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download prometheus >/dev/null 2>&1) || {
    apt-get update >/dev/null
    (cd "$work" && apt-get download prometheus >/dev/null)
  }
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  mkdir -p "$dest/bin"
  install -m 0755 "$work/root/usr/bin/promtool" "$bin"
fi
echo "$bin"
