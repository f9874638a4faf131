#!/bin/sh
# One-shot: join the six Valkey containers into one cluster (3 primaries, 1 replica each). Idempotent, so
# `docker compose up` may run it on every start: a cluster that already exists is left alone.
set -eu

NODES="${VALKEY_NODES:?space-separated host:port list}"
first=${NODES%% *}
host=${first%:*}
port=${first#*:}

# Every node must answer before it can be given slots.
for node in $NODES; do
    until valkey-cli -h "${node%:*}" -p "${node#*:}" ping >/dev/null 2>&1; do
        echo "waiting for $node"
        sleep 1
    done
done

if valkey-cli -h "$host" -p "$port" cluster info | grep -q '^cluster_state:ok'; then
    echo "cluster already formed"
    valkey-cli -h "$host" -p "$port" cluster nodes
    exit 0
fi
# A restarted cluster (nodes.conf on the data volumes) knows its peers but reports cluster_state:fail for the few
# seconds its nodes need to find each other again; `--cluster create` would then refuse the non-empty nodes. Wait.
known=$(valkey-cli -h "$host" -p "$port" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')
if [ "${known:-1}" -gt 1 ]; then
    echo "cluster exists ($known nodes known); waiting until it is whole again"
    until valkey-cli -h "$host" -p "$port" cluster info | grep -q '^cluster_state:ok'; do
        sleep 1
    done
    valkey-cli -h "$host" -p "$port" cluster nodes
    exit 0
fi

# shellcheck disable=SC2086  # one argument per node
valkey-cli --cluster create $NODES --cluster-replicas 1 --cluster-yes

# `--cluster create` returns once slots are assigned; wait until every node agrees the cluster is up, so that the
# JanSamvad nodes (which start after this container exits) find it serving.
until valkey-cli -h "$host" -p "$port" cluster info | grep -q '^cluster_state:ok'; do
    sleep 1
done
valkey-cli -h "$host" -p "$port" cluster nodes
