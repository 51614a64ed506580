#!/usr/bin/env bash
# Publish benchmark: envelopes confirmed end to end per second (publisher ->
# RabbitMQ -> Beskedfordeler emulator -> StandardRetur reply) on loopback,
# median of RUNS runs, with a private RabbitMQ node. Checks that every
# event reached the dueslag. Beside it, the emulator's rate alone
# (`simulate load`: every envelope in flight at once, no publisher logic),
# so that the publisher's figure is read against the ceiling the emulator
# and broker set.
#
#   scripts/bench-publish.sh             # ~50,000 events, in_flight 500, 3 runs
#   IN_FLIGHT=1000 RUNS=5 scripts/bench-publish.sh
#   scripts/bench-publish.sh --smoke     # small, 1 run (CI)
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-1000000}
CHURN=${CHURN:-0.025}
RUNS=${RUNS:-3}
IN_FLIGHT=${IN_FLIGHT:-500}
if [[ "${1:-}" == "--smoke" ]]; then KEYS=50000; CHURN=0.02; RUNS=1; fi

source scripts/build-bin.sh
WORK=$(mktemp -d)
EMU_PID=
cleanup() {
    [[ -n "$EMU_PID" ]] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
    scripts/stop-rabbitmq.sh "$WORK/rabbitmq"
    rm -rf "$WORK"
}
trap cleanup EXIT
eval "$(scripts/start-rabbitmq.sh "$WORK/rabbitmq")"

"$BIN" generate --out "$WORK/lists" --authorities 5 --keys "$KEYS" --days 2 --churn "$CHURN" 2>/dev/null
scripts/make-config.sh "$WORK/lists" "$WORK/state" >"$WORK/config.toml"
cat >>"$WORK/config.toml" <<TOML

[beskedfordeler]
url = "$NEMSMS_DIFF_AMQP_URL"
token = "bench-token"
insecure_broker = true
in_flight = $IN_FLIGHT
TOML
"$BIN" run --config "$WORK/config.toml" --date 2026-01-01 >/dev/null 2>&1
"$BIN" run --config "$WORK/config.toml" --date 2026-01-02 >/dev/null 2>&1
EVENTS=$("$BIN" outbox list --config "$WORK/config.toml" --json | sed 's/.*"n_events":\([0-9]*\).*/\1/' | awk '{s += $1} END {print s}')
BESKEDTYPE=$(sed -n 's/^beskedtype = "\(.*\)"/\1/p' "$WORK/config.toml")

"$BIN" simulate beskedfordeler --subscribe "dueslag.bench=$BESKEDTYPE" >"$WORK/emu.out" 2>&1 &
EMU_PID=$!
for _ in $(seq 100); do grep -q ready "$WORK/emu.out" && break; sleep 0.1; done

: >"$WORK/rates"
for run in $(seq "$RUNS"); do
    find "$WORK/state/outbox" -name '*.cursor' -delete
    start=$(date +%s%N)
    "$BIN" publish --config "$WORK/config.toml" >"$WORK/publish.out" 2>"$WORK/publish.err"
    ns=$(($(date +%s%N) - start))
    "$BIN" simulate drain --queue dueslag.bench --idle-ms 1000 >"$WORK/ids" 2>/dev/null
    got=$(sort -u "$WORK/ids" | wc -l)
    if [[ "$got" -ne "$EVENTS" ]]; then
        echo "FAIL: run $run: $got distinct BeskedIds reached the dueslag, the outbox has $EVENTS events" >&2
        cat "$WORK/publish.out" >&2
        exit 1
    fi
    awk -v n="$EVENTS" -v ns="$ns" 'BEGIN { printf "%.0f\n", n / (ns / 1e9) }' >>"$WORK/rates"
done
: >"$WORK/emu-rates"
for run in $(seq "$RUNS"); do
    "$BIN" simulate load --config "$WORK/config.toml" >"$WORK/load.out" 2>"$WORK/load.err" || { cat "$WORK/load.out" "$WORK/load.err" >&2; exit 1; }
    sed -n 's/.* \([0-9]*\) messages\/s$/\1/p' "$WORK/load.out" >>"$WORK/emu-rates"
    "$BIN" simulate drain --queue dueslag.bench --idle-ms 1000 >"$WORK/ids" 2>/dev/null
    got=$(sort -u "$WORK/ids" | wc -l)
    if [[ "$got" -ne "$EVENTS" ]]; then
        echo "FAIL: emulator load run $run: $got distinct BeskedIds reached the dueslag, expected $EVENTS" >&2
        exit 1
    fi
done
median_of() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
median=$(median_of "$WORK/rates")
emu=$(median_of "$WORK/emu-rates")
echo "emulator alone: $EVENTS envelopes all in flight: median $emu answers/s over $RUNS runs (all: $(tr '\n' ' ' <"$WORK/emu-rates"))"
echo "publish: $EVENTS envelopes confirmed end to end, in_flight $IN_FLIGHT: median $median envelopes/s over $RUNS runs (all: $(tr '\n' ' ' <"$WORK/rates"))"
awk -v p="$median" -v e="$emu" 'BEGIN { printf "  publisher / emulator alone: %.2f\n", p / e }'
echo "  target: >= 5000 envelopes/s $([[ $median -ge 5000 ]] && echo met || echo MISSED)"
