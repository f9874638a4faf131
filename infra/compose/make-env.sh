#!/usr/bin/env bash
# Write infra/compose/.env with fresh random secrets for the local cluster (docker compose reads it by itself).
# Never overwrites: an existing .env keeps its secrets, and with them every token already handed out.
set -euo pipefail
cd "$(dirname "$0")"

# The containers' open-file and process limits: the production value (1048576, compose.yaml's default) where this
# host allows it, else the most it allows (infra/images/limits.sh says why). Added to an existing .env too, once.
add_limits() {
    grep -q '^STACK_NOFILE=' .env 2>/dev/null && return 0
    # shellcheck source=../images/limits.sh
    source ../images/limits.sh
    {
        echo "# Container limits for this host (compose.yaml, x-limits); production hosts: 1048576 (docs/deploy.md)"
        echo "STACK_NOFILE=$STACK_NOFILE"
        echo "STACK_NPROC=$STACK_NPROC"
        # HAProxy wants about two descriptors per connection plus a few of its own.
        maxconn=$(( (STACK_NOFILE - 1000) / 2 ))
        [ "$maxconn" -le 200000 ] || maxconn=200000
        echo "HAPROXY_MAXCONN=$maxconn"
    } >> .env
}
if [ -e .env ]; then
    echo ".env exists; delete it first to make new secrets"
    add_limits
    exit 0
fi
command -v openssl >/dev/null || { echo "make-env.sh: openssl is needed (apt-get install openssl)" >&2; exit 1; }
umask 077
{
    echo "# Made by make-env.sh. Tokens are signed with JANSAMVAD_SECRET: changing it logs everybody out."
    echo "JANSAMVAD_SECRET=$(openssl rand -hex 48)"
    echo "JANSAMVAD_ADMIN_KEY=$(openssl rand -hex 24)"
    echo "GRAFANA_ADMIN_PASSWORD=$(openssl rand -hex 12)"
    echo "# The page's origin as the browser sees it; add more, space-separated, e.g. https://192.168.1.20:8443"
    echo "JANSAMVAD_ALLOWED_ORIGIN=https://localhost:8443"
} > .env
add_limits
echo "wrote $(pwd)/.env"
