#!/usr/bin/env bash
# Installs the certified OpenID Provider (npm package oidc-provider) used by the interop
# tests into tests/interop/oidc_provider/node_modules, exactly as pinned by its
# package-lock.json. Idempotent: does nothing when node_modules already matches the lock.
set -euo pipefail

dir="$(cd "$(dirname "$0")/.." && pwd)/tests/interop/oidc_provider"
stamp="$dir/node_modules/.authrelay-lock.sha256"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-interop: '$tool' is not installed; the interop tests need Node.js >= 20 and npm" >&2
    exit 1
  fi
done

major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "install-interop: Node.js >= 20 is required, found $(node --version)" >&2
  exit 1
fi

want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dir/node_modules/oidc-provider/package.json" ]; then
  exit 0
fi

echo "install-interop: installing oidc-provider into $dir/node_modules" >&2
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
printf '%s\n' "$want" >"$stamp"
