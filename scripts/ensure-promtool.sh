#!/bin/sh
# Make sure Prometheus' promtool is installed for the metrics test that runs
# `promtool check metrics` on the server's /metrics (tests/integration/test_metrics_promtool.py).
# Run by `make test` before pytest.
#
# - promtool on the PATH: nothing to do.
# - missing, running as root with apt-get: install Debian's `prometheus` package, which ships it,
#   without its recommends, and without starting the Prometheus service (fails if that fails,
#   so that a CI machine never skips the test silently).
# - missing otherwise: say why and how, and exit 0; the test then skips, saying so.
set -eu

if command -v promtool >/dev/null 2>&1; then
    echo "ensure-promtool: $(command -v promtool) is installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-promtool: promtool is missing and apt-get is not available (not Debian?);" \
        "install Prometheus' promtool to run the metrics format test, which skips until then"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-promtool: promtool is missing; run 'sudo apt-get install -y" \
        "--no-install-recommends prometheus' to run the metrics format test, which skips until then"
    exit 0
fi
echo "ensure-promtool: installing Debian's prometheus package (for promtool) with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d exit 101: the package's service is not started on install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
promtool --version | head -n 1
