#!/usr/bin/env bash
# Stops the node scripts/start-rabbitmq.sh started in DIR (and epmd, if that
# script started it), then removes DIR.
set -uo pipefail
DIR=${1:?usage: stop-rabbitmq.sh DIR}
[[ -f "$DIR/env" ]] || exit 0
# shellcheck disable=SC1091
source "$DIR/env"
/usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || true
if [[ -f "$RABBITMQ_PID_FILE" ]]; then
    pid=$(cat "$RABBITMQ_PID_FILE")
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
fi
if [[ "$EPMD_WAS_RUNNING" == no ]]; then
    pkill -x epmd 2>/dev/null || true
fi
rm -rf "$DIR"
