#!/bin/sh
# Container entrypoint for the JanSamvad node (infra/docker/Dockerfile).
#
#   (no arguments or only flags)  jansamvad serve --host 0.0.0.0 --workers N [flags]
#   any other command             run it as given, e.g. `docker run IMAGE jansamvad token --role admin ...`
#
# Settings come from JANSAMVAD_* variables (`jansamvad serve --help`); flags passed to the container win over them.
set -eu

# Open files. Each WebSocket holds one descriptor, and RLIMIT_NOFILE applies per process (per worker), so a node
# needs at least JANSAMVAD_MAX_CONNECTIONS plus some slack for Redis, listening and log sockets. Runtimes often hand
# containers soft 1024 / hard 524288 or more: an unprivileged process may raise its soft limit up to the hard one,
# so do that rather than fail at the 1000th citizen.
hard=$(ulimit -H -n)
if [ "$hard" = unlimited ] || [ "$(ulimit -S -n)" != "$hard" ]; then
    ulimit -S -n "$hard" 2>/dev/null || true
fi
soft=$(ulimit -S -n)
want=$(( ${JANSAMVAD_MAX_CONNECTIONS:-18000} + 256 ))
if [ "$soft" != unlimited ] && [ "$soft" -lt "$want" ]; then
    echo "jansamvad-entrypoint: open-file limit is $soft, below JANSAMVAD_MAX_CONNECTIONS + 256 = $want;" \
         "the node will fail to accept beyond it. Raise the container's nofile ulimit (docs/deploy.md)." >&2
fi

# Worker processes: one per CPU this container may actually use. nproc honours the CPU set (cpuset, taskset) but
# not a CFS quota (`docker run --cpus`, a Kubernetes CPU limit), so read the cgroup quota too, or a 2-CPU container on
# a 64-core host would start 64 workers. Workers share town halls through Redis, so without a Redis URL it is one.
cpus() {
    n=$(nproc 2>/dev/null || echo 1)
    quota=max
    period=100000
    if [ -r /sys/fs/cgroup/cpu.max ]; then                      # cgroup v2: "<quota> <period>" or "max <period>"
        read -r quota period < /sys/fs/cgroup/cpu.max
    elif [ -r /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then       # cgroup v1: -1 means no quota
        quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)
        period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)
        [ "$quota" -gt 0 ] || quota=max
    fi
    if [ "$quota" != max ] && [ "$period" -gt 0 ]; then
        limit=$(( (quota + period - 1) / period ))               # round up: 1.5 CPUs -> 2 workers
        [ "$limit" -lt "$n" ] && n=$limit
    fi
    [ "$n" -ge 1 ] || n=1
    [ "$n" -le 256 ] || n=256                                   # the CLI's upper bound
    echo "$n"
}

case "${1:-}" in
    "" | -*)
        if [ -z "${JANSAMVAD_WORKERS:-}" ]; then
            if [ -n "${JANSAMVAD_REDIS_URL:-}" ]; then JANSAMVAD_WORKERS=$(cpus); else JANSAMVAD_WORKERS=1; fi
        fi
        # exec: the node (or its worker supervisor) replaces this shell, so SIGTERM from tini reaches it directly.
        exec jansamvad serve --host "${JANSAMVAD_HOST:-0.0.0.0}" --workers "$JANSAMVAD_WORKERS" "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
