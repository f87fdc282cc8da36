# The lab image: the reference epoll servers, the grader and the benchmark, in one venv.
# `docker compose up` grades the reference servers with it; `lab --docker` and hosts without
# epoll (macOS, Windows) run any `lab` command in it.
#
# Discussion:
# - BASE_IMAGE is swappable because CI reaches no container registry: it builds a stand-in
#   from Debian packages (ci/docker-engine.sh). Anything with python3 (>= 3.11) and its venv
#   module works; only `python3`, not `python`, is assumed.
# - The lab is installed from the wheel built in the first stage, as `pip install` would
#   install it anywhere: what runs here is what the wheel ships (the scenarios are package
#   data), so a file the wheel forgot fails here too, not only on a user's machine.
# - Nothing is compiled (docker, requests and tabulate are pure Python), so the image carries
#   no build tools; the only additions to the base are the venv and the lab (~27 MB).
# - Who runs: the container starts as root and lab.entrypoint drops, before anything else
#   runs, to the uid:gid owning the results folder (the image's `lab` user, 1000, unless a
#   host folder is mounted there), so results on the host belong to whoever owns the folder,
#   with no variable to set. Started with --user (the SDK path does that), it runs as is.
# - Signals: the image has no init of its own; compose sets `init: true`, and the SDK path
#   passes init=True, so `docker stop` delivers SIGTERM to `lab` and reaps the servers the
#   grader starts. With plain `docker run`, add `--init`.
# - No HEALTHCHECK here: the default command is a batch job (the grader) that listens on
#   nothing. The long-running servers get theirs in compose.yaml, where the port is known.
# - Written for the classic builder too (no BuildKit-only syntax): the docker SDK and
#   docker-compose v1 build with it.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY . /src
RUN python3 -m venv /tmp/build \
 && /tmp/build/bin/pip wheel --quiet --no-deps --wheel-dir /dist /src

FROM ${BASE_IMAGE}

# WITH_ZIG=1 adds a Zig compiler (PyPI's ziglang, run as `zig`) to build and grade Zig servers,
# the version pinned in pyproject.toml's `zig` extra (the one examples/zig is written for), and
# a global cache pre-built by `zig build` of `zig init`'s project (LAB_ZIG_CACHE_SEED: the
# build runner, compiler_rt, the standard library's ZIR), which a sandbox copies to its tmpfs
# (lab.runner.build.seed_zig_cache): half of a cold build's CPU time and memory peak. `zig
# init` also caches under $HOME (/tmp) as root; that cache is removed, or it would deny zig's
# cache to every other user ("manifest_create AccessDenied").
ARG WITH_ZIG=

# HOME=/tmp: the lab may run as any uid (the results folder's owner, the SDK's caller), and
# tools that cache under $HOME (zig, pip) need it writable.
ENV PATH=/opt/lab/bin:$PATH \
    HOME=/tmp \
    LAB_ZIG_CACHE_SEED=/opt/zig-cache \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /lab

# The dependencies get a layer of their own, read from pyproject.toml, so editing the lab's
# code reinstalls nothing but the lab itself.
COPY pyproject.toml /tmp/pyproject.toml
RUN python3 -m venv /opt/lab \
 && python3 -c 'import tomllib; print(*tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && if [ -n "$WITH_ZIG" ]; then \
        python3 -c 'import tomllib; print(*tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]["optional-dependencies"]["zig"], sep="\n")' \
            > /tmp/zig-requirements.txt \
        && pip install -r /tmp/zig-requirements.txt \
        && rm /tmp/zig-requirements.txt \
        && printf '#!/bin/sh\nexec /opt/lab/bin/python -m ziglang "$@"\n' > /opt/lab/bin/zig \
        && chmod 755 /opt/lab/bin/zig \
        && mkdir /tmp/zig-seed && cd /tmp/zig-seed && zig init \
        && ZIG_GLOBAL_CACHE_DIR=$LAB_ZIG_CACHE_SEED zig build -Doptimize=ReleaseSafe \
        && cd / && chmod -R a+rX $LAB_ZIG_CACHE_SEED \
        && rm -rf /tmp/zig-seed "$HOME/.cache"; \
    fi \
 && rm /tmp/requirements.txt /tmp/pyproject.toml

COPY --from=wheel /dist/ /tmp/dist/
RUN pip install --no-deps /tmp/dist/*.whl \
 && rm -rf /tmp/dist \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /lab --shell /usr/sbin/nologin lab \
 && mkdir -p /lab/results \
 && chown lab:lab /lab/results

# Servers in compose bind 0.0.0.0:8080; published ports map 127.0.0.1:8080-8084 onto it.
EXPOSE 8080
ENTRYPOINT ["python3", "-m", "lab.entrypoint"]
CMD ["grade", "--results", "/lab/results"]
