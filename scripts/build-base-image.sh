#!/usr/bin/env bash
# Build the sandbox base image offline, from Debian's packages, when it is missing.
#
# The sandbox Dockerfiles start `FROM python:3.12-slim`. With a container registry
# that tag is simply pulled and this script is never needed. These machines reach
# no registry, so instead we debootstrap a minimal Debian bookworm with python3
# and import it under the same tag; `docker build` then uses the local tag without
# pulling. The result is an honest stand-in (Debian's Python 3.11, not the
# official image's 3.12): the sandbox code only needs a python3 on PATH.
# Usage: scripts/build-base-image.sh [TAG]   (default: python:3.12-slim)
set -euo pipefail
TAG="${1:-python:3.12-slim}"
log() { echo "build-base-image: $*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
    exit 0  # already there (pulled, or built by an earlier run)
fi
if docker pull --quiet "$TAG" >/dev/null 2>&1; then
    log "pulled $TAG"
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
rootfs="$(mktemp -d /tmp/opd-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
chmod 0755 "$rootfs"  # mktemp makes it 0700, and it becomes the image's /
log "no registry: debootstrapping bookworm with python3 into $rootfs (about a minute)"
debootstrap --variant=minbase --include=python3 bookworm "$rootfs" >/dev/null
# Trim what a sandbox never needs, to keep the image (copied per container on vfs) small.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
ln -sf python3 "$rootfs/usr/bin/python"
tar -C "$rootfs" -c . | docker import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' - "$TAG" >/dev/null
log "imported $TAG ($(docker image inspect --format '{{.Size}}' "$TAG") bytes)"
