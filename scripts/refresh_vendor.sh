#!/usr/bin/env bash
# Vendored browser dependencies of client_web/ (the demo and the pages never need Node or a CDN at run time).
#
#   scripts/refresh_vendor.sh            fetch the pinned version from npm, check it against the lock, install it
#   scripts/refresh_vendor.sh --check    offline: check the files in client_web/vendor/ against the lock
#   scripts/refresh_vendor.sh --update [VERSION]
#                                        fetch VERSION (default: the pinned one), install it and rewrite the lock
#
# The lock is client_web/vendor/VENDOR.md: one line per file, `<sha256>  <file>  <npm package>@<version>  <path in
# package>`. Fetching uses `npm pack` (which checks the tarball against the registry's integrity hash) in a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE="@msgpack/msgpack"
DIST_PATH="dist.umd/msgpack.min.js"
TARGET="client_web/vendor/msgpack.min.js"
LOCK="client_web/vendor/VENDOR.md"

lock_line() { grep -E "^[0-9a-f]{64}  $(basename "$TARGET")  " "$LOCK" || true; }
pinned_sha() { lock_line | awk '{print $1}'; }
pinned_version() { lock_line | awk '{print $3}' | sed 's/.*@//'; }
sha() { sha256sum "$1" | awk '{print $1}'; }

mode="${1:-fetch}"
case "$mode" in
  --check)
    want="$(pinned_sha)"
    [ -n "$want" ] || { echo "no lock line for $(basename "$TARGET") in $LOCK" >&2; exit 1; }
    got="$(sha "$TARGET")"
    if [ "$got" != "$want" ]; then
      echo "checksum mismatch: $TARGET is $got, $LOCK pins $want" >&2
      exit 1
    fi
    echo "ok: $TARGET $PACKAGE@$(pinned_version) sha256 $got"
    exit 0
    ;;
  fetch | --update) ;;
  *) echo "usage: $0 [--check | --update [VERSION]]" >&2; exit 2 ;;
esac

command -v npm >/dev/null || { echo "npm is needed to fetch $PACKAGE (not to run the pages)" >&2; exit 1; }
version="${2:-$(pinned_version)}"
[ -n "$version" ] || { echo "no pinned version in $LOCK; pass one: $0 --update 3.1.3" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PACKAGE@$version" >/dev/null)
tarball="$(ls "$tmp"/*.tgz)"
tar -xzf "$tarball" -C "$tmp" "package/$DIST_PATH" "package/LICENSE" "package/package.json"
real_version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$tmp/package/package.json" | head -1)"
[ "$real_version" = "$version" ] || { echo "npm gave $real_version, expected $version" >&2; exit 1; }
got="$(sha "$tmp/package/$DIST_PATH")"

if [ "$mode" = "fetch" ]; then
  want="$(pinned_sha)"
  if [ "$got" != "$want" ]; then
    echo "checksum mismatch: $PACKAGE@$version $DIST_PATH is $got, $LOCK pins $want" >&2
    exit 1
  fi
fi

cp "$tmp/package/$DIST_PATH" "$TARGET"
cp "$tmp/package/LICENSE" "client_web/vendor/msgpack.LICENSE"
tarball_sha="$(sha "$tarball")"
cat > "$LOCK" <<LOCKEOF
# Vendored files of client_web/

Pinned builds of third-party browser code, served by the node itself (no CDN, no Node at run time).
Refresh or verify with \`scripts/refresh_vendor.sh\` (see its header); the lines below are its lock.

| file | package | from | licence |
|---|---|---|---|
| \`msgpack.min.js\` | [$PACKAGE](https://www.npmjs.com/package/$PACKAGE) $version | \`$DIST_PATH\` (UMD build, defines \`globalThis.MessagePack\`) | ISC (\`msgpack.LICENSE\`) |

The npm tarball \`$(basename "$tarball")\` had sha256 \`$tarball_sha\`.

Lock (sha256, file, package@version, path in the package):

\`\`\`
$got  $(basename "$TARGET")  $PACKAGE@$version  $DIST_PATH
\`\`\`
LOCKEOF
echo "installed $PACKAGE@$version -> $TARGET (sha256 $got)"
