#!/usr/bin/env bash
# Make the TLS certificate HAProxy serves for the local compose cluster, so browsers reach it over https:// and wss://.
#
#     ./make-cert.sh                    # localhost, 127.0.0.1, ::1
#     ./make-cert.sh 192.168.1.20 myhost.lan    # ... and these names, e.g. to try it from a phone on the LAN
#
# It makes a small local certificate authority once (certs/ca.pem) and a server certificate signed by it every time
# it runs (so adding a name keeps the same CA). Either accept the browser's warning once for https://localhost:8443,
# or trust certs/ca.pem in the browser or OS to get no warning at all. Never use any of this outside a development
# machine: the CA key sits unencrypted next to it.
set -euo pipefail
cd "$(dirname "$0")"
command -v openssl >/dev/null || { echo "make-cert.sh: openssl is needed (apt-get install openssl)" >&2; exit 1; }

mkdir -p certs
umask 077

# ECDSA P-256 rather than RSA: a reconnect wave after a node drains is thousands of TLS handshakes at once, and an
# ECDSA signature costs the proxy a small fraction of an RSA-2048 one.
if [ ! -s certs/ca.pem ] || [ ! -s certs/ca-key.pem ]; then
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout certs/ca-key.pem -out certs/ca.pem -days 3650 -subj "/CN=JanSamvad local development CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    echo "made a local CA: certs/ca.pem (trust it to silence browser warnings)"
fi

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$tmp/key.pem" -out "$tmp/req.csr" -subj "/CN=localhost" 2>/dev/null
# Browsers want the names in subjectAltName (the CN is ignored), serverAuth usage, and at most 398 days.
cat > "$tmp/ext.cnf" <<EXT
subjectAltName = $san
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
EXT
openssl x509 -req -in "$tmp/req.csr" -CA certs/ca.pem -CAkey certs/ca-key.pem -CAcreateserial \
    -CAserial "$tmp/ca.srl" -days 397 -extfile "$tmp/ext.cnf" -out "$tmp/cert.pem" 2>/dev/null

# HAProxy reads one PEM with the certificate, its chain and the key. The HAProxy image runs as an unprivileged user
# that does not own this file, so the bundle must be world-readable; the CA key stays private.
cat "$tmp/cert.pem" certs/ca.pem "$tmp/key.pem" > certs/jansamvad.pem
cp "$tmp/cert.pem" certs/jansamvad.crt
chmod 0644 certs/jansamvad.pem certs/jansamvad.crt certs/ca.pem
echo "made certs/jansamvad.pem for $san"
