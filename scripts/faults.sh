#!/usr/bin/env bash
# The network-fault tests (tests/it/faults.rs), ROUNDS rounds of each, with a
# private RabbitMQ node: the broker app stopped for 3 s and for 20 s while
# 60,000 events are published, an outage past a 4 s outage_deadline, the
# national day-2 run (full and change lists) through the fault proxy that
# cuts the Register's connections after a random number of bytes, and
# `alive check` against a silent emulator and a silent broker. Prints one
# line per round and fault: cuts, retries, duplicates, times.
#
#   scripts/faults.sh            # 5 rounds, national data (6M keys)
#   scripts/faults.sh 2          # 2 rounds
#   KEYS=600000 scripts/faults.sh 1
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
RABBIT_DIR=$(mktemp -d)
log=$(mktemp)
trap 'scripts/stop-rabbitmq.sh "$RABBIT_DIR"; rm -f "$log"' EXIT
eval "$(scripts/start-rabbitmq.sh "$RABBIT_DIR")"
NEMSMS_DIFF_FAULT_ROUNDS=$ROUNDS NEMSMS_DIFF_FAULT_KEYS=${KEYS:-6000000} \
    cargo test --test it faults:: -- --nocapture --test-threads 1 >"$log" 2>&1 || {
    grep -E "^test |panicked|fault-stats" "$log" >&2
    echo "FAIL: see the output above" >&2
    exit 1
}
grep '^fault-stats:' "$log" | sed 's/^fault-stats: //'
grep -E '^test result:' "$log"
