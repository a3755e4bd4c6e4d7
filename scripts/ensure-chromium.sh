#!/usr/bin/env bash
# Make Debian's Chromium available for the viewer's browser tests, idempotently.
#
# Called by `make test` (and so by CI, on a fresh machine). Playwright's own browser
# download cannot work on a closed network, so the tests drive the distribution's
# Chromium through the Playwright Python package instead. A second run costs nothing.
# Usage: scripts/ensure-chromium.sh   (OPD_CHROMIUM: another Chromium binary to check)
set -euo pipefail
browser="${OPD_CHROMIUM:-/usr/bin/chromium}"
log() { echo "ensure-chromium: $*" >&2; }

if [ ! -x "$browser" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "$browser is missing and this is not root: install Chromium (apt-get install chromium) to run the browser tests."
        exit 1
    fi
    log "installing Debian's chromium"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
"$browser" --version >/dev/null 2>&1 || { log "$browser does not run ($browser --version failed)"; exit 1; }
log "$("$browser" --version) is ready"
