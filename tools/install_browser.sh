#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the demo's browser test (tests/test_demo_browser.py).
#
# Does nothing when /usr/bin/chromium and /usr/bin/chromedriver are already there. Needs apt-get
# and root (as on CI); without them it prints why and exits 0, and the browser test then skips
# with that reason. Run by `make test`; by hand: `bash tools/install_browser.sh`.
set -uo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_browser: apt-get not found; install chromium and chromedriver by hand to run the browser test" >&2
    exit 0
fi
SUDO=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "install_browser: not root and no password-less sudo; run 'apt-get install chromium chromium-driver' as root to run the browser test" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! { "${SUDO[@]}" apt-get update -qq && \
       "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }; then
    echo "install_browser: apt-get could not install chromium chromium-driver; the browser test will skip" >&2
fi
exit 0
