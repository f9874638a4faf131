#!/usr/bin/env bash
# Builds the node image and proves a container of it serves a town hall, from a fresh clone (CI, `make image-smoke`):
#
#     infra/ci/image-smoke.sh            # exit 0: every check passed; 1: one failed; 77: no container engine
#
# 1. the base image from Debian packages (infra/images/make-base.sh; kept in podman's store, made only when missing),
# 2. infra/docker/Dockerfile, unchanged, with PYTHON_IMAGE set to that base (`podman build --format docker`, so
#    the image keeps its HEALTHCHECK: the OCI format has no place for one),
# 3. one container, its port published on 127.0.0.1 only, then infra/ci/smoke.py: /healthz, /readyz, the
#    HEALTHCHECK, a non-root user, a town hall over the REST API, a WebSocket join and a speech, and SIGTERM
#    (reconnect, close 1012, an orderly stop).
# The container is removed at the end, whatever happened. PYTHON (default: the project's .venv) runs smoke.py.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v podman >/dev/null 2>&1 || ! command -v mmdebstrap >/dev/null 2>&1; then
    echo "image-smoke: podman and mmdebstrap are needed (apt-get install podman runc mmdebstrap); skipping" >&2
    exit 77
fi
# shellcheck source=../images/limits.sh
source infra/images/limits.sh

IMAGE=${IMAGE:-localhost/jansamvad:local}
BASE_IMAGE=${BASE_IMAGE:-localhost/jansamvad-base:bookworm}
NAME=${SMOKE_CONTAINER:-jansamvad-image-smoke}
PYTHON=${PYTHON:-.venv/bin/python}
export BASE_IMAGE

infra/images/make-base.sh
started=$(date +%s)
podman build --quiet --format docker "${STACK_ULIMITS[@]}" --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    -f infra/docker/Dockerfile -t "$IMAGE" . >/dev/null
echo "image-smoke: built $IMAGE in $(( $(date +%s) - started )) s," \
     "$(podman image inspect --format '{{ .Size }}' "$IMAGE") bytes"

cleanup() { podman rm --force --ignore --time 0 "$NAME" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
admin_key=$("$PYTHON" -c 'import secrets; print("smoke-" + secrets.token_hex(16))')
podman run --detach --name "$NAME" "${STACK_ULIMITS[@]}" --publish 127.0.0.1::8000 \
    --env JANSAMVAD_SECRET="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(32))')" \
    --env JANSAMVAD_ADMIN_KEY="$admin_key" \
    "$IMAGE" 2> >(grep -v 'systemd connection' >&2) >/dev/null   # no systemd here: podman runs the checks on demand
port=$(podman port "$NAME" 8000/tcp)
port=${port##*:}
echo "image-smoke: container $NAME serves on 127.0.0.1:$port"
if ! "$PYTHON" infra/ci/smoke.py --base "http://127.0.0.1:$port" --admin-key "$admin_key" --container "$NAME"; then
    echo "image-smoke: the container's log:" >&2
    podman logs --tail 50 "$NAME" >&2 || true
    exit 1
fi
echo "image-smoke: passed"
