#!/usr/bin/env bash
# The compose stack on this machine, with podman and podman-compose (or Docker Compose where Docker runs):
#
#     infra/compose/stack.sh up       # build the images (infra/images/build.sh), secrets, certificate, start, wait
#     infra/compose/stack.sh ps       # the containers and their state
#     infra/compose/stack.sh down     # stop and remove the containers and the network (data volumes stay)
#     infra/compose/stack.sh reset    # the same, and the data volumes too
#     infra/compose/stack.sh compose ARGS...   # any other compose command, e.g. `logs node1`, `restart haproxy`
#
# `make stack-up` / `make stack-down` call this. Settings from the environment: STACK_PROJECT (compose project name,
# default jansamvad), STACK_ENV_FILE (default infra/compose/.env, written by make-env.sh), STACK_ENGINE (podman or
# docker; default podman when installed), COMPOSE (the podman-compose to run; default the project's .venv one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"

project=${STACK_PROJECT:-jansamvad}
env_file=${STACK_ENV_FILE:-$here/.env}
engine=${STACK_ENGINE:-}
if [ -z "$engine" ]; then
    if command -v podman >/dev/null 2>&1; then engine=podman; else engine=docker; fi
fi

compose() {
    if [ "$engine" = podman ]; then
        local pc=${COMPOSE:-$root/.venv/bin/podman-compose}
        [ -x "$pc" ] || pc=$(command -v podman-compose) \
            || { echo "stack: podman-compose >= 1.5 is needed (pip install -e '.[infra]')" >&2; exit 1; }
        # compose.podman.yaml: what podman 4.3 needs on top (see that file). --no-deps on `up`: podman-compose
        # would otherwise tie each container to its dependencies with --requires, which podman 4.3 cannot start
        # ("generating dependency graph ... not found in input list"); `up` below orders the start itself.
        "$pc" --project-name "$project" --env-file "$env_file" -f compose.yaml -f compose.podman.yaml "$@"
    else
        docker compose --project-name "$project" --env-file "$env_file" -f compose.yaml "$@"
    fi
}

container() {  # the container of a service: podman-compose names them project_service_1, Docker project-service-1
    if [ "$engine" = podman ]; then echo "${project}_$1_1"; else echo "${project}-$1-1"; fi
}

https_port() { sed -n 's/^STACK_HTTPS_PORT=//p' "$env_file" | tail -1 | grep . || echo 8443; }

wait_ready() {
    # Every node ready (its /readyz: Valkey reachable, slots served), then HAProxy serving the API over TLS.
    local deadline=$(( $(date +%s) + ${STACK_READY_TIMEOUT:-180} ))
    for node in node1 node2 node3; do
        until "$engine" exec "$(container "$node")" python -c \
            "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/readyz', timeout=2)" 2>/dev/null; do
            [ "$(date +%s)" -lt "$deadline" ] || { echo "stack: $node is not ready" >&2; return 1; }
            sleep 1
        done
    done
    local url="https://127.0.0.1:$(https_port)/readyz"
    until curl -fsS --cacert certs/ca.pem --resolve "localhost:$(https_port):127.0.0.1" \
            "https://localhost:$(https_port)/readyz" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "stack: HAProxy does not serve $url" >&2; return 1; }
        sleep 1
    done
    echo "stack: up; https://localhost:$(https_port)/ (CA: infra/compose/certs/ca.pem)"
}

case "${1:-}" in
    up)
        if [ "$engine" = podman ]; then "$root/infra/images/build.sh"; else compose build; fi
        [ "$env_file" != "$here/.env" ] || ./make-env.sh
        ./make-cert.sh
        if [ "$engine" = podman ]; then
            # In two steps, because `--no-deps` (see compose()) also drops podman-compose's waits on depends_on:
            # Valkey and the one-shot cluster init first, then, once the cluster serves every slot, the rest. A
            # node started against a half-formed cluster exits ("not all slots covered") and is restarted anyway,
            # but its API answers 500 meanwhile.
            compose up -d --no-deps valkey-1 valkey-2 valkey-3 valkey-4 valkey-5 valkey-6 valkey-init
            status=$(podman wait "$(container valkey-init)")
            if [ "$status" != 0 ]; then
                podman logs --tail 20 "$(container valkey-init)" >&2
                echo "stack: valkey-init exited with $status" >&2
                exit 1
            fi
            compose up -d --no-deps
        else
            compose up -d
        fi
        wait_ready
        ;;
    wait) wait_ready ;;
    ps) compose ps ;;
    down) compose down -t 40 ;;
    reset) compose down -v -t 40 ;;
    compose) shift; compose "$@" ;;
    *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
