#!/usr/bin/env bash
# Quick start: install what cloister needs (Debian/Ubuntu), build it, check the machine, and open a
# sandboxed shell on this repository. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# bubblewrap, socat, gcc and git to run cloister; curl, openssl, python3 and chromium for `npm test` (the
# egress and broker tests use curl, python and a test CA inside cloisters, which see the system's
# /usr/bin, not a user's own python; the approval UI test drives chromium; the completion scripts are
# tried in a real zsh and fish; a lifecycle test reads a socket's accept queue with iproute2's ss).
for pkg in bubblewrap:bwrap socat:socat gcc:cc git:git curl:curl openssl:openssl python3:/usr/bin/python3 chromium:chromium zsh:zsh fish:fish iproute2:ss; do
  command -v "${pkg#*:}" >/dev/null 2>&1 || need+=("${pkg%%:*}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${need[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" libc6-dev ca-certificates
fi

echo "==> installing npm dependencies"
npm ci --no-fund --no-audit --loglevel=error
echo "==> building"
npm run --silent build
echo "==> checking this machine"
bin/cloister doctor || { echo "cloister doctor found a problem: see the fixes above" >&2; exit 1; }
echo "==> opening a cloister on this repository (type 'exit' to leave, 'bin/cloister stop' to end it)"
exec bin/cloister start
