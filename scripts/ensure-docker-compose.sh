#!/bin/sh
# Make sure `docker-compose` is installed, for the test that validates compose.yaml with
# `docker-compose config -q` (tests/docs/test_deploy_files.py). Run by `make test` before pytest.
# It needs no Docker engine: `config` only parses, interpolates and checks the file.
#
# - docker-compose present: nothing to do.
# - missing, running as root with apt-get: install Debian's `docker-compose` package without its
#   recommends (which would pull in the Docker engine); fails if that fails, so that a CI machine
#   never skips the check silently.
# - missing otherwise: say why and how, and exit 0; the compose test then skips, saying so.
set -eu

if command -v docker-compose >/dev/null 2>&1; then
    echo "ensure-docker-compose: $(command -v docker-compose) is installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-docker-compose: docker-compose is missing and apt-get is not available" \
        "(not Debian?); install docker-compose to run the compose.yaml check, which skips until then"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-docker-compose: docker-compose is missing; run" \
        "'sudo apt-get install -y --no-install-recommends docker-compose' to run the compose.yaml" \
        "check, which skips until then"
    exit 0
fi
echo "ensure-docker-compose: installing Debian's docker-compose package with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
docker-compose version
