#!/usr/bin/env bash
# Write infra/compose/.env with fresh random secrets for the local cluster (docker compose reads it by itself).
# Never overwrites: an existing .env keeps its secrets, and with them every token already handed out.
set -euo pipefail
cd "$(dirname "$0")"
if [ -e .env ]; then
    echo ".env exists; delete it first to make new secrets"
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
echo "wrote $(pwd)/.env"
