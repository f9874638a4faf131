#!/usr/bin/env bash
# Makes the base image every JanSamvad image is built on, from Debian packages alone (no container registry):
#
#     infra/images/make-base.sh            # localhost/jansamvad-base:bookworm, unless it is already there
#     FORCE=1 infra/images/make-base.sh    # make it again (e.g. to pick up Debian security updates)
#
# mmdebstrap --variant=minbase builds a Debian 12 root filesystem (about 250 MB) with Python 3.11 (what
# infra/docker/Dockerfile takes as PYTHON_IMAGE), pip and venv for its build stage, tini for PID 1 and CA
# certificates; `podman import` turns the tarball into an image. Takes about a minute; the image then stays in
# podman's store, and this script does nothing while an image made from this very script is there (its label
# records the script's hash), so CI pays for it once per machine.
#
# The machine's own extra CA certificates (/usr/local/share/ca-certificates/*.crt, Debian's place for them) are
# copied in, so that pip and apt inside image builds trust what the host trusts (a TLS-inspecting proxy, a company
# CA). Without any, the image has Debian's CA bundle only.
set -euo pipefail

IMAGE=${BASE_IMAGE:-localhost/jansamvad-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PACKAGES=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,tini

recipe=$( (cat "$0"; echo "$IMAGE $MIRROR $SECURITY") | sha256sum | cut -c1-16)
if [ -z "${FORCE:-}" ] \
    && [ "$(podman image inspect --format '{{ index .Labels "org.jansamvad.base-recipe" }}' "$IMAGE" 2>/dev/null)" = "$recipe" ]
then
    echo "make-base: $IMAGE is there (recipe $recipe)"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "make-base: building $IMAGE from $MIRROR (bookworm, minbase + $PACKAGES)"
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
    --customize-hook='mkdir -p "$1/usr/local/share/ca-certificates"' \
    --customize-hook='for f in /usr/local/share/ca-certificates/*.crt; do [ ! -e "$f" ] || cp "$f" "$1/usr/local/share/ca-certificates/"; done' \
    --customize-hook='chroot "$1" update-ca-certificates' \
    bookworm "$work/rootfs.tar" \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main"
# What python:3.11-slim sets and the Dockerfile relies on: a UTF-8 locale and a shell as the default command.
podman import --quiet \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.jansamvad.base-recipe=$recipe" \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
echo "make-base: $IMAGE made ($(podman image inspect --format '{{ .Size }}' "$IMAGE") bytes)"
