#!/bin/sh
# Make sure axe-core (the accessibility engine, npm package `axe-core`) is there for the browser
# tests (tests/browser/test_accessibility.py), which inject its axe.min.js into each dashboard page
# through Playwright. Run by `make test` before pytest. Nothing of it ships with Conveyor.
#
# - build/axe-core/axe.min.js present: nothing to do.
# - missing, npm available: fetch the pinned version's tarball with `npm pack`, check it against
#   the pinned integrity, and unpack axe.min.js (with its licence) there; fails if any step fails,
#   so that a CI machine never skips the accessibility tests silently.
# - missing and no npm: say why and how, and exit 0; the accessibility tests then skip, saying so.
set -eu

VERSION=4.14.1
INTEGRITY="sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/build/axe-core"

if [ -f "$DEST/axe.min.js" ] && [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "$VERSION" ]; then
    echo "ensure-axe: axe-core $VERSION is in build/axe-core"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "ensure-axe: npm is not installed, so axe-core cannot be fetched; install Node.js and npm" \
        "(Debian: apt-get install -y npm) to run the accessibility tests, which skip until then"
    exit 0
fi
echo "ensure-axe: fetching axe-core $VERSION with npm pack"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "axe-core@$VERSION" >/dev/null)
TARBALL="$WORK/axe-core-$VERSION.tgz"
GOT="sha512-$(openssl dgst -sha512 -binary "$TARBALL" | base64 | tr -d '\n')"
if [ "$GOT" != "$INTEGRITY" ]; then
    echo "ensure-axe: the tarball of axe-core $VERSION does not match its pinned integrity" >&2
    exit 1
fi
tar -xzf "$TARBALL" -C "$WORK" package/axe.min.js package/LICENSE
mkdir -p "$DEST"
cp "$WORK/package/axe.min.js" "$WORK/package/LICENSE" "$DEST/"
echo "$VERSION" >"$DEST/VERSION"
echo "ensure-axe: axe-core $VERSION installed in build/axe-core"
