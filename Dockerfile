# The lab image: the reference epoll servers, the grader and the benchmark, in one venv, run
# as a non-root user. `docker compose up` grades the reference servers with it; `lab --docker`
# and hosts without epoll (macOS, Windows) run any `lab` command in it.
#
# Discussion:
# - BASE_IMAGE is swappable because CI reaches no container registry: it builds a stand-in
#   from Debian packages (ci/docker-engine.sh). Anything with python3 (>= 3.11) and its venv
#   module works; only `python3`, not `python`, is assumed.
# - Nothing is compiled (docker, requests and tabulate are pure Python), so the image carries
#   no build tools; the only additions to the base are the venv and the lab (~27 MB).
# - Signals: the image has no init of its own; compose sets `init: true`, and the SDK path
#   passes init=True, so `docker stop` delivers SIGTERM to `lab` and reaps the servers the
#   grader starts. With plain `docker run`, add `--init`.
# - No HEALTHCHECK here: the default command is a batch job (the grader) that listens on
#   nothing. The long-running servers get theirs in compose.yaml, where the port is known.
# - Written for the classic builder too (no BuildKit-only syntax): the docker SDK and
#   docker-compose v1 build with it.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

# WITH_ZIG=1 adds a Zig compiler (PyPI's ziglang, run as `zig`) to build and grade Zig servers,
# the version pinned in pyproject.toml's `zig` extra (the one examples/zig is written for).
ARG WITH_ZIG=

# HOME=/tmp: containers may run as any uid (compose's LAB_USER, the SDK's caller's uid), and
# tools that cache under $HOME (zig, pip) need it writable.
ENV PATH=/opt/lab/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /lab

# The dependencies get a layer of their own, read from pyproject.toml, so editing the lab's
# code reinstalls nothing but the lab itself.
COPY pyproject.toml ./
RUN python3 -m venv /opt/lab \
 && python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt \
 && if [ -n "$WITH_ZIG" ]; then \
        python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["zig"], sep="\n")' \
            > /tmp/zig-requirements.txt \
        && pip install -r /tmp/zig-requirements.txt \
        && rm /tmp/zig-requirements.txt \
        && printf '#!/bin/sh\nexec /opt/lab/bin/python -m ziglang "$@"\n' > /opt/lab/bin/zig \
        && chmod 755 /opt/lab/bin/zig; \
    fi

# Editable, so the lab stays in /lab beside scenarios/, where the grader looks for them.
COPY . ./
RUN pip install --no-deps --editable . \
 && useradd --uid 1000 --user-group --no-create-home --home-dir /lab --shell /usr/sbin/nologin lab \
 && mkdir -p /lab/results \
 && chown lab:lab /lab/results

USER lab
# Servers in compose bind 0.0.0.0:8080; published ports map 127.0.0.1:8080-8084 onto it.
EXPOSE 8080
ENTRYPOINT ["lab"]
CMD ["grade", "--results", "/lab/results"]
