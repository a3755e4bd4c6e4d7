#!/usr/bin/env bash
# Build opd-sandbox-mcp (docker/mcp/Dockerfile): the python sandbox image plus MCP servers from PyPI.
#
# The Docker build reaches no network (machines here have no registry, and
# sandboxes none), so the host downloads the wheels with pip, for the image's
# own Python version and platform, into a cache; the build installs them with
# --no-index. Each step is skipped when its result is there: the wheels are
# cached under ~/.cache/opd/mcp-wheels/<python>-<platform>-<requirements hash>, and an image whose label matches
# the key (Dockerfile, requirements, sandbox image id) is not rebuilt, so a second
# run costs well under a second. Called by scripts/ensure-docker.sh after the
# sandbox images are built. Usage: scripts/build-mcp-image.sh [PYTHON]
# (the Python whose pip downloads the wheels; default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-.venv/bin/python}"
IMAGE="${OPD_MCP_IMAGE:-opd-sandbox-mcp:0.1}"
BASE="opd-sandbox-python:0.1"
log() { echo "build-mcp-image: $*" >&2; }

base_id="$(docker image inspect --format '{{.Id}}' "$BASE")"
key="$(cat docker/mcp/Dockerfile docker/mcp/requirements.txt <(echo "$base_id") | sha256sum | cut -c1-16)"
if [ "$(docker image inspect --format '{{index .Config.Labels "opd.mcp.key"}}' "$IMAGE" 2>/dev/null)" = "$key" ]; then
    exit 0
fi

# The wheels must fit the image's Python (the offline base is Debian's 3.11, the official one 3.12) and platform.
read -r pyver arch glibc < <(docker run --rm --network none "$BASE" python3 -I -c \
    'import platform, sys; print(f"{sys.version_info[0]}{sys.version_info[1]}", platform.machine(), platform.libc_ver()[1].replace(".", "_"))')
[ -n "${glibc:-}" ] || { log "could not tell the Python version and glibc of $BASE (python3 in it failed, or it is not glibc-based)"; exit 1; }
wheels_key="$(sha256sum docker/mcp/requirements.txt | cut -c1-16)"
context="${XDG_CACHE_HOME:-$HOME/.cache}/opd/mcp-wheels/cp$pyver-$arch-$wheels_key"
if [ ! -f "$context/.complete" ]; then
    log "downloading the MCP servers' wheels for cp$pyver/$arch into $context"
    rm -rf "$context" && mkdir -p "$context/wheels"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary :all: -d "$context/wheels" \
        --implementation cp --python-version "$pyver" --abi "cp$pyver" \
        --platform "manylinux_${glibc}_$arch" --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
        pip -r docker/mcp/requirements.txt
    cp docker/mcp/requirements.txt "$context/wheels/"
    touch "$context/.complete"
fi
log "building $IMAGE"
previous="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
if ! built="$(docker build --label "opd.mcp.key=$key" --build-arg "SANDBOX_IMAGE=$BASE" -t "$IMAGE" -f docker/mcp/Dockerfile "$context" 2>&1)"; then
    echo "$built" >&2
    log "the build failed (output above)"
    exit 1
fi
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$IMAGE")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true  # our own superseded build (vfs keeps a full copy per layer); kept if in use
fi
log "built $IMAGE ($(docker image inspect --format '{{.Size}}' "$IMAGE") bytes)"
