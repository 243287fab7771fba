#!/bin/sh
# Make sure Debian's Chromium is installed for the browser tests (tests/browser), which drive it
# with Playwright (no `playwright install`). Run by `make test` before pytest.
#
# - /usr/bin/chromium present: nothing to do.
# - missing, running as root with apt-get: install the `chromium` package (fails if that fails,
#   so that a CI machine never skips the browser tests silently).
# - missing otherwise: say why and how, and exit 0; the browser tests then skip, saying so.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    echo "ensure-chromium: $CHROMIUM is installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available (not Debian?);" \
        "install Chromium at $CHROMIUM to run the browser tests, which skip until then"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-chromium: $CHROMIUM is missing; run 'sudo apt-get install -y chromium' to run" \
        "the browser tests, which skip until then"
    exit 0
fi
echo "ensure-chromium: installing Debian's chromium package with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
"$CHROMIUM" --version
