#!/bin/sh
# Make sure this machine can build and run the project's containers, for the container tests
# (tests/containers), which build the image from the Dockerfile and run compose.yaml's topology
# with podman. Run by `make test` before pytest.
#
# No registry of images is reachable from the machines Conveyor is developed on, so the
# Dockerfile's base image is built here instead, from Debian's own packages: a stand-in tagged
# docker.io/library/python:3.11-slim (Debian bookworm's python3, 3.11, with pip), and for
# compose.yaml's database a stand-in tagged docker.io/library/postgres:16 (Debian's PostgreSQL 15
# behind an entrypoint that honours the official image's POSTGRES_* variables). Both are built
# once per machine and kept; a run that finds them costs a second.
#
# - the machine cannot run containers (not Linux, not root, no namespaces or cgroups), or podman
#   is missing and apt-get is not there to install it: say why and exit 0, installing nothing;
#   the container tests then skip, saying the same.
# - otherwise: install podman, runc, debootstrap and podman-compose with apt-get when missing,
#   build the stand-in images when missing or made by an older recipe, and run one container to
#   prove it works. Any failure then fails this script, so that a CI machine that can run
#   containers never skips them silently.
#
# `ensure-containers.sh --check` installs and builds nothing: it exits 0 when the tests can run,
# and otherwise prints why and exits 2 (this machine cannot run containers) or 3 (it can, but
# this script has not prepared it yet). The container tests ask it before they start.
set -eu

PYTHON_IMAGE=docker.io/library/python:3.11-slim
POSTGRES_IMAGE=docker.io/library/postgres:16
# Bump when a stand-in's recipe below changes: an image with another label is rebuilt.
RECIPE=1
HERE=$(cd "$(dirname "$0")" && pwd)

check_only=false
if [ "${1:-}" = "--check" ]; then
    check_only=true
fi

say() {
    echo "ensure-containers: $*"
}

# The machine cannot run containers: explain, and leave it as it is.
cannot() {
    say "$*; the container tests (tests/containers) skip until then"
    if $check_only; then
        exit 2
    fi
    exit 0
}

# Everything podman needs from the kernel and from us, probed without installing anything.
probe_machine() {
    if [ "$(uname -s)" != Linux ]; then
        cannot "containers need Linux, this is $(uname -s)"
    fi
    if [ "$(id -u)" -ne 0 ]; then
        # Rootless podman needs subordinate uid ranges and a user session; the tests are written
        # for root's podman, as on the project's machines.
        cannot "the container tests run podman as root, and this is uid $(id -u)"
    fi
    if ! unshare --mount --uts --ipc --pid --net --fork true 2>/dev/null; then
        cannot "this machine cannot create namespaces (unshare --mount --uts --ipc --pid --net fails)"
    fi
    if [ ! -d /sys/fs/cgroup ] || [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
        cannot "no cgroup file system is mounted at /sys/fs/cgroup"
    fi
    if ! command -v podman >/dev/null 2>&1 && ! command -v apt-get >/dev/null 2>&1; then
        cannot "podman is missing and apt-get is not available (not Debian?) to install it"
    fi
}

missing_packages() {
    missing=""
    for tool in podman runc debootstrap podman-compose; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            missing="$missing $tool"
        fi
    done
    echo "$missing"
}

# An image of that name made by this recipe, or one without our label at all: the real image,
# pulled from a registry on a machine that reaches one, which this script leaves alone. A
# stand-in made by an older recipe is not good enough.
has_image() {
    podman image exists "$1" || return 1
    label=$(podman image inspect --format '{{index .Labels "org.conveyor.stand-in"}}' "$1")
    [ "$label" = "$RECIPE" ] || [ "$label" = "<no value>" ] || [ -z "$label" ]
}

# The first URIs: of the machine's apt sources (deb822 or one-line format): the mirror the
# machine already reaches, through whatever proxy it uses.
apt_mirror() {
    mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources \
        2>/dev/null | head -n 1)
    if [ -z "$mirror" ]; then
        mirror=$(sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\2/p' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1)
    fi
    echo "${mirror:-http://deb.debian.org/debian}"
}

# A Debian bookworm root file system with python3 (and pip, venv, CA certificates), imported
# as a one-layer image. debootstrap's minbase variant is Debian's required packages and apt,
# which is what python:3.11-slim's Debian base has (useradd included).
build_rootfs_image() {
    work=$(mktemp -d /var/tmp/conveyor-rootfs.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    say "debootstrap bookworm from $(apt_mirror) (about two minutes)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$work/root" "$(apt_mirror)" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log"; exit 1; }
    # No package lists or downloaded packages in the image: the build stages install with pip.
    rm -rf "$work"/root/var/lib/apt/lists/* "$work"/root/var/cache/apt/*.bin \
        "$work"/root/var/cache/apt/archives/*.deb
    tar -C "$work/root" -c . | podman import --quiet - "localhost/conveyor-bookworm-python:$RECIPE" \
        >/dev/null
    rm -rf "$work"
    trap - EXIT
}

# Both stand-ins share build/containers/ as their context; the Containerfiles say what each
# adds to the imported root file system.
build_stand_in() {
    context=$(mktemp -d /var/tmp/conveyor-stand-in.XXXXXX)
    cp "$HERE"/../tests/containers/stand-ins/* "$context"/
    # Package downloads from these machines go through a proxy whose CA only the machine's
    # bundle has: images that run pip need it.
    cp /etc/ssl/certs/ca-certificates.crt "$context"/ca-certificates.crt
    if ! podman build --runtime runc --network host --pull=never --format docker \
        --build-arg "BASE=localhost/conveyor-bookworm-python:$RECIPE" \
        --label "org.conveyor.stand-in=$RECIPE" \
        -f "$context/$1" -t "$2" "$context" >"$context/build.log" 2>&1; then
        tail -n 30 "$context/build.log"
        rm -rf "$context"
        exit 1
    fi
    rm -rf "$context"
}

# The limits a container may have: podman (as root) asks for 1048576 open files and, once any
# limit is given, as many processes, which only a process with CAP_SYS_RESOURCE may grant: where
# this script lacks it (a container or a sandboxed VM), every start fails with "error setting
# rlimit ... operation not permitted". Ours are within reach: open files up to this process's
# hard limit, processes up to podman's default of 32768. tests/containers/podman.py does the same.
ulimit_args() {
    nofile=$(prlimit --pid $$ --nofile --noheadings --output HARD | tr -d ' ')
    nproc=$(prlimit --pid $$ --nproc --noheadings --output HARD | tr -d ' ')
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then
        nproc=32768
    fi
    echo "--ulimit nofile=$nofile:$nofile --ulimit nproc=$nproc:$nproc"
}

probe_machine

missing=$(missing_packages)
if $check_only; then
    if [ -n "$missing" ]; then
        say "missing:$missing; run 'sh scripts/ensure-containers.sh' as root (make test does)," \
            "the container tests skip until then"
        exit 3
    fi
    for image in "$PYTHON_IMAGE" "$POSTGRES_IMAGE"; do
        if ! has_image "$image"; then
            say "the stand-in $image is not built; run 'sh scripts/ensure-containers.sh'" \
                "(make test does), the container tests skip until then"
            exit 3
        fi
    done
    say "ready ($(podman --version), $(runc --version | head -n 1))"
    exit 0
fi

# Two runs at once (two checkouts testing on one machine) would build the same images twice.
exec 9>/var/lock/conveyor-ensure-containers.lock
flock 9

if [ -n "$missing" ]; then
    say "installing$missing with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # podman-compose comes as a Debian package (1.0.3); the other three are its dependencies'
    # neighbours: runc because crun cannot set RLIMIT_NPROC here, debootstrap for the stand-ins.
    apt-get install -y -qq podman runc debootstrap podman-compose >/dev/null
fi

started=$(date +%s)
if ! has_image "$PYTHON_IMAGE" || ! has_image "$POSTGRES_IMAGE"; then
    if ! podman image exists "localhost/conveyor-bookworm-python:$RECIPE"; then
        build_rootfs_image
    fi
    if ! has_image "$PYTHON_IMAGE"; then
        say "building the stand-in $PYTHON_IMAGE"
        build_stand_in python.Containerfile "$PYTHON_IMAGE"
    fi
    if ! has_image "$POSTGRES_IMAGE"; then
        say "building the stand-in $POSTGRES_IMAGE (Debian's PostgreSQL 15)"
        build_stand_in postgres.Containerfile "$POSTGRES_IMAGE"
    fi
    say "stand-in images built in $(($(date +%s) - started)) s"
fi

# One container, to fail here (not in the middle of the tests) if podman cannot run any.
# shellcheck disable=SC2046 # ulimit_args gives four words
if ! output=$(podman run --rm --runtime runc --network host --pull=never $(ulimit_args) \
    "$PYTHON_IMAGE" python -c 'import ssl, sys; print(sys.version.split()[0])' 2>&1); then
    say "podman is installed but cannot run a container:"
    echo "$output"
    exit 1
fi
say "ready ($(podman --version), runc, Python $output in $PYTHON_IMAGE)"
