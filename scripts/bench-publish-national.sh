#!/usr/bin/env bash
# Publishing a national day: 98 authorities' batches (~12,000 events) to
# the Beskedfordeler emulator on a private RabbitMQ, fault-free and with
# faults (a 41 every 997 messages, one reply in 1,009 dropped), median of
# RUNS runs each. Every run is checked: every BeskedId of the outbox
# reached the dueslag; duplicates are counted.
#
#   scripts/bench-publish-national.sh           # 6,000,000 keys, 3 runs
#   RUNS=5 scripts/bench-publish-national.sh
#   scripts/bench-publish-national.sh --smoke   # 600,000 keys, 1 run (CI)
#   MASS=1 scripts/bench-publish-national.sh    # a mass day instead: the
#       first run with first_run = "emit-all" (every key an event; KEYS
#       default 600,000 then, 6,000,000 is the national one), fault-free:
#       run time, publish rate, publisher CPU per message and peak memory
#   WAN_MS=20 scripts/bench-publish-national.sh # the national day on
#       loopback, then with the broker behind the fault proxy adding 20 ms
#       each way (the kernel has no netem): target within 1.5x
#
# Targets (issue 12): with the faults at most 2x the fault-free time and at
# most 2 % duplicates, nothing lost.
set -euo pipefail
cd "$(dirname "$0")/.."

MASS=${MASS:-}
if [[ -n $MASS ]]; then KEYS=${KEYS:-600000}; else KEYS=${KEYS:-6000000}; fi
RUNS=${RUNS:-3}
FAULTS=${FAULTS:---answer-41-every 997 --drop-reply-every 1009}
if [[ "${1:-}" == "--smoke" ]]; then KEYS=600000; RUNS=1; fi

source scripts/build-bin.sh
WORK=$(mktemp -d)
EMU_PID=
stop_emulator() {
    if [[ -n "$EMU_PID" ]]; then kill "$EMU_PID" 2>/dev/null || true; wait "$EMU_PID" 2>/dev/null || true; fi
    EMU_PID=
}
PROXY_PID=
cleanup() {
    stop_emulator
    if [[ -n $PROXY_PID ]]; then kill "$PROXY_PID" 2>/dev/null || true; wait "$PROXY_PID" 2>/dev/null || true; fi
    scripts/stop-rabbitmq.sh "$WORK/rabbitmq" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
eval "$(scripts/start-rabbitmq.sh "$WORK/rabbitmq")" >/dev/null

"$BIN" generate --out "$WORK/lists" --authorities 98 --keys "$KEYS" --days 2 --churn 0.001 >/dev/null 2>&1
BESKEDFORDELER_URL="$NEMSMS_DIFF_AMQP_URL" EXCHANGE=NATIONAL \
    scripts/make-config.sh "$WORK/lists" "$WORK/state" >"$WORK/config.toml"
if [[ -n ${PARALLEL:-} ]]; then
    sed -i "/^\[beskedfordeler\]/a parallel_authorities = $PARALLEL" "$WORK/config.toml"
fi
if [[ -n $MASS ]]; then
    sed -i '/^source = /a first_run = "emit-all"' "$WORK/config.toml"
    /usr/bin/time -f "%e s, %M KB peak" -o "$WORK/run.time" \
        "$BIN" run --config "$WORK/config.toml" --date 2026-01-01 --no-publish >/dev/null 2>&1
    echo "mass day: run (emit-all, $KEYS keys): $(cat "$WORK/run.time")"
else
    "$BIN" run --config "$WORK/config.toml" --date 2026-01-01 --no-publish >/dev/null 2>&1
    "$BIN" run --config "$WORK/config.toml" --date 2026-01-02 --no-publish >/dev/null 2>&1
fi
"$BIN" outbox list --config "$WORK/config.toml" --json >"$WORK/batches"
EVENTS=$(sed 's/.*"n_events":\([0-9]*\).*/\1/' "$WORK/batches" | awk '{s += $1} END {print s}')
BATCHES=$(grep -c '"n_events":[1-9]' "$WORK/batches")
BESKEDTYPE=$(sed -n 's/^beskedtype = "\(.*\)"/\1/p' "$WORK/config.toml")

# scenario NAME [emulator faults…]: RUNS publishes; seconds and deliveries.
scenario() {
    local name=$1
    shift
    : >"$WORK/$name.secs"
    : >"$WORK/$name.dups"
    : >"$WORK/$name.cpu"
    for run in $(seq "$RUNS"); do
        "$BIN" simulate beskedfordeler --exchange NATIONAL --subscribe "dueslag.national=$BESKEDTYPE" "$@" \
            >"$WORK/emu.out" 2>&1 &
        EMU_PID=$!
        for _ in $(seq 100); do grep -q ready "$WORK/emu.out" && break; sleep 0.1; done
        find "$WORK/state/outbox" -name '*.cursor' -delete
        start=$(date +%s%N)
        if ! /usr/bin/time -f "%U %S %M" -o "$WORK/cpu" \
            "$BIN" publish --config "$WORK/config.toml" >"$WORK/publish.out" 2>"$WORK/publish.err"; then
            echo "FAIL: $name run $run: publish did not complete" >&2
            tail -5 "$WORK/publish.out" "$WORK/publish.err" >&2
            exit 1
        fi
        ns=$(($(date +%s%N) - start))
        stop_emulator
        "$BIN" simulate drain --queue dueslag.national --idle-ms 5000 >"$WORK/ids" 2>/dev/null
        got=$(sort -u "$WORK/ids" | wc -l)
        all=$(wc -l <"$WORK/ids")
        if [[ "$got" -ne "$EVENTS" ]]; then
            echo "FAIL: $name run $run: $got distinct BeskedIds reached the dueslag, the outbox has $EVENTS events" >&2
            exit 1
        fi
        awk -v ns="$ns" 'BEGIN { printf "%.3f\n", ns / 1e9 }' >>"$WORK/$name.secs"
        echo $((all - got)) >>"$WORK/$name.dups"
        awk -v n="$all" '{ printf "%.1f\n", ($1 + $2) * 1e6 / n }' "$WORK/cpu" >>"$WORK/$name.cpu"
        awk '{ print $3 }' "$WORK/cpu" >>"$WORK/$name.rss"
    done
}
median_of() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

scenario clean
if [[ -n ${WAN_MS:-} ]]; then
    hostport=$(echo "$NEMSMS_DIFF_AMQP_URL" | sed 's#.*@\([^/]*\)/.*#\1#')
    "$BIN" simulate proxy --upstream "$hostport" --latency-ms "$WAN_MS" >"$WORK/proxy.out" 2>&1 &
    PROXY_PID=$!
    for _ in $(seq 100); do grep -q listening "$WORK/proxy.out" && break; sleep 0.1; done
    proxied=$(sed -n 's#.*listening on tcp://##p' "$WORK/proxy.out")
    sed -i "s#@$hostport/#@$proxied/#" "$WORK/config.toml"
    scenario wan
    clean=$(median_of "$WORK/clean.secs")
    wan=$(median_of "$WORK/wan.secs")
    echo "national day: $BATCHES batches, $EVENTS events, every BeskedId delivered in every run"
    echo "  loopback: median $clean s; broker ${WAN_MS} ms away each way: median $wan s over $RUNS runs (all: $(tr '\n' ' ' <"$WORK/wan.secs"))"
    awk -v w="$wan" -v c="$clean" 'BEGIN { r = w / c; printf "  WAN / loopback: %.2fx (target <= 1.5x: %s)\n", r, (r <= 1.5 ? "met" : "MISSED") }'
    exit 0
fi
if [[ -n $MASS ]]; then
    secs=$(median_of "$WORK/clean.secs")
    echo "mass day: $EVENTS events in $BATCHES batches published in median $secs s over $RUNS runs (all: $(tr '\n' ' ' <"$WORK/clean.secs")); duplicates: $(tr '\n' ' ' <"$WORK/clean.dups")"
    awk -v n="$EVENTS" -v s="$secs" -v c="$(median_of "$WORK/clean.cpu")" -v m="$(median_of "$WORK/clean.rss")" 'BEGIN {
        r = n / s
        printf "  confirmed end to end: %.0f envelopes/s (target >= 10000: %s); publisher CPU per message %.1f µs (target <= 20: %s); publisher peak RSS %.0f MB\n",
            r, (r >= 10000 ? "met" : "MISSED"), c, (c <= 20 ? "met" : "MISSED"), m / 1024
    }'
    exit 0
fi
# shellcheck disable=SC2086
scenario faults $FAULTS
clean=$(median_of "$WORK/clean.secs")
faulted=$(median_of "$WORK/faults.secs")
dups=$(median_of "$WORK/faults.dups")
echo "national day: $BATCHES batches, $EVENTS events, every BeskedId delivered in every run"
echo "  fault-free: median $clean s over $RUNS runs (all: $(tr '\n' ' ' <"$WORK/clean.secs")); publisher CPU (user+sys) per delivered message: median $(median_of "$WORK/clean.cpu") µs; duplicates $(tr '\n' ' ' <"$WORK/clean.dups")"
echo "  with faults ($FAULTS): median $faulted s (all: $(tr '\n' ' ' <"$WORK/faults.secs")); duplicates median $dups (all: $(tr '\n' ' ' <"$WORK/faults.dups"))"
awk -v f="$faulted" -v c="$clean" -v d="$dups" -v n="$EVENTS" 'BEGIN {
    r = f / c; p = 100 * d / n
    printf "  faults / fault-free: %.2fx (target <= 2x: %s); duplicates %.2f %% (target <= 2 %%: %s)\n",
        r, (r <= 2 ? "met" : "MISSED"), p, (p <= 2 ? "met" : "MISSED")
}'
