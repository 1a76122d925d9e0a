#!/usr/bin/env bash
# Installs what the browser tests (tests/web, marker `browser`) need on a fresh machine:
# Debian's Chromium at /usr/bin/chromium, a small CJK font so screenshots of the Chinese page are
# legible, and the Playwright Python driver in the project venv. It never runs
# `playwright install`: the tests drive Debian's Chromium, not a downloaded browser build.
# Idempotent; safe to run before every `make test`. Exits 0 even if an install fails, so the
# tests can then skip with a clear reason instead of the whole run failing here.
set -u
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if ! fc-list 2>/dev/null | grep -qi -e 'wenquanyi' -e 'noto sans cjk' -e 'noto serif cjk'; then
    need_apt+=(fonts-wqy-microhei)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null \
            || echo "setup_browser: apt-get install ${need_apt[*]} failed" >&2
    else
        echo "setup_browser: not root; cannot install ${need_apt[*]}" >&2
    fi
fi

if ! "$PY" -c 'import playwright' 2>/dev/null; then
    "$PY" -m pip install -q playwright || echo "setup_browser: pip install playwright failed" >&2
fi

if [ -x /usr/bin/chromium ] && "$PY" -c 'import playwright' 2>/dev/null; then
    echo "setup_browser: ready ($(/usr/bin/chromium --version 2>/dev/null | head -1))"
else
    echo "setup_browser: browser tests will be skipped (chromium or playwright missing)" >&2
fi
exit 0
