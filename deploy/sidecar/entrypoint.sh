#!/bin/sh
# Entrypoint of the authrelay sidecar container (also runnable as a plain script).
#
#   entrypoint.sh [serve]      run the sidecar
#   entrypoint.sh healthcheck  exit 0 when GET /healthz answers 200
#
# Settings: the TOML file at $SIDECAR_SETTINGS (default /etc/authrelay/authrelay.toml)
# when it exists, else AUTHRELAY_* environment variables (Settings.from_env).
# SIDECAR_HOST (default 127.0.0.1: loopback unless told otherwise), SIDECAR_PORT (5000),
# SIDECAR_LOG_LEVEL (info), SIDECAR_COMMAND (authrelay), SIDECAR_PYTHON (python3).
set -eu

host="${SIDECAR_HOST:-127.0.0.1}"
port="${SIDECAR_PORT:-5000}"
settings="${SIDECAR_SETTINGS:-/etc/authrelay/authrelay.toml}"
command="${SIDECAR_COMMAND:-authrelay}"
python="${SIDECAR_PYTHON:-python3}"

case "${1:-serve}" in
healthcheck)
    exec "$python" -c '
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=3) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except Exception as exc:
    sys.stderr.write(f"healthcheck: {type(exc).__name__}\n")
    sys.exit(1)
' "$port"
    ;;
serve)
    if [ -f "$settings" ]; then
        set -- --settings "$settings"
    elif env | grep -q '^AUTHRELAY_'; then
        set -- --from-env
    else
        echo "authrelay sidecar: no settings: mount a TOML file at $settings" \
            "(or set SIDECAR_SETTINGS), or set AUTHRELAY_* variables" >&2
        exit 64
    fi
    exec "$command" sidecar "$@" --host "$host" --port "$port" \
        --log-level "${SIDECAR_LOG_LEVEL:-info}"
    ;;
*)
    exec "$@"
    ;;
esac
