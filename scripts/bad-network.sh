#!/usr/bin/env bash
# Bad networks, end to end: the Register simulator and the RabbitMQ broker
# behind the fault proxy (`nemsms-diff simulate proxy`; this kernel has no
# tc netem), with 20 ms latency each way, 200 Mbit/s per connection,
# connections cut after a random
# number of bytes, and the link taken down for a few seconds in the middle
# of the download and in the middle of the publish. The national day-2 run
# over OIOREST (change lists) and its publish must complete, or fail
# cleanly and complete on the rerun, with exactly the lists' changes
# committed and every BeskedId delivered.
#
#   scripts/bad-network.sh                 # 98 authorities, 6M keys
#   KEYS=600000 scripts/bad-network.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-6000000}
LATENCY_MS=${LATENCY_MS:-20}
DOWN_SECS=${DOWN_SECS:-4}
RATE_KBIT=${RATE_KBIT:-200000}   # 200 Mbit/s per connection, each way

source scripts/build-bin.sh
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    # serve runs in command substitutions: its pids come from the pid files.
    for f in "$WORK"/*.pid; do [[ -e $f ]] && kill "$(cat "$f")" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -d "$WORK/rabbitmq" ]] && scripts/stop-rabbitmq.sh "$WORK/rabbitmq"
    rm -rf "$WORK"
}
trap cleanup EXIT
eval "$(scripts/start-rabbitmq.sh "$WORK/rabbitmq")"

"$BIN" generate --out "$WORK/lists" --keys "$KEYS" --days 2 2>/dev/null
"$BIN" simulate certs --out "$WORK/certs" 2>/dev/null
"$BIN" diff "$WORK/lists/2026-01-01" "$WORK/lists/2026-01-02" --out "$WORK/changes" >/dev/null 2>&1

serve() { # NAME ARGS...: starts a server, waits for its banner, prints its address
    local name=$1; shift
    "$BIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=($!)
    echo $! >"$WORK/$name.pid"
    for _ in $(seq 200); do [[ -s "$WORK/$name.out" ]] && break; sleep 0.05; done
    grep -o '[a-z]*://[^ ]*' "$WORK/$name.out" | tail -1
}
REGISTER_URL=https://127.0.0.1:1 CERTS="$WORK/certs" LIST_MODE=delta \
    scripts/make-config.sh "$WORK/lists" "$WORK/state" >"$WORK/config.toml"
reg=$(serve register simulate register --data "$WORK/lists" --cert "$WORK/certs/server.pem" \
    --key "$WORK/certs/server-key.pem" --client-ca "$WORK/certs/ca.pem" --config "$WORK/config.toml" \
    --delliste-size 50000 --record "$WORK/record.jsonl")
preg=$(serve preg simulate proxy --upstream "${reg#https://}" --latency-ms "$LATENCY_MS" \
    --rate-kbit "$RATE_KBIT" --cut-after 7M-18M --log "$WORK/preg.jsonl")
broker=${NEMSMS_DIFF_AMQP_URL#*@}; broker=${broker%%/*}
pbrk=$(serve pbrk simulate proxy --upstream "$broker" --latency-ms "$LATENCY_MS" \
    --rate-kbit "$RATE_KBIT" --cut-after 2M-8M --log "$WORK/pbrk.jsonl")
sed -i "s|^base_url = .*|base_url = \"https://${preg#tcp://}\"|" "$WORK/config.toml"
printf '\n[beskedfordeler]\nurl = "%s"\ntoken = "t"\ninsecure_broker = true\nmax_backoff_ms = 1000\nreply_timeout_ms = 3000\n' \
    "${NEMSMS_DIFF_AMQP_URL/$broker/${pbrk#tcp://}}" >>"$WORK/config.toml"
beskedtype=$(sed -n 's/^beskedtype = "\(.*\)"/\1/p' "$WORK/config.toml")
serve emulator simulate beskedfordeler --subscribe "dueslag.net=$beskedtype" >/dev/null

link_flap() { # PROXY DELAY: takes the link down after DELAY s for DOWN_SECS s
    sleep "$2"; kill -USR2 "$(cat "$WORK/$1.pid")"; sleep "$DOWN_SECS"; kill -USR2 "$(cat "$WORK/$1.pid")"
}
runs() { # DATE: the run, rerun once if it failed cleanly (exit 3: some authorities, 6: all)
    local code=0
    "$BIN" run --config "$WORK/config.toml" --date "$1" --no-publish >"$WORK/run.out" 2>"$WORK/run.err" || code=$?
    if [[ $code -eq 3 || $code -eq 6 ]]; then
        echo "  $1: exit $code (failed cleanly: $(grep -c failed "$WORK/run.out") authorities); rerun"
        code=0
        "$BIN" run --config "$WORK/config.toml" --date "$1" --no-publish >"$WORK/run.out" 2>"$WORK/run.err" || code=$?
    fi
    [[ $code -eq 0 ]] || { echo "FAIL: run $1 exit $code" >&2; tail "$WORK/run.err" >&2; exit 1; }
}

start=$(date +%s%N)
runs 2026-01-01
link_flap preg 0.5 & flap=$!
runs 2026-01-02
wait $flap
run_s=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
# Exactly the lists' changes, authority by authority.
for f in "$WORK/changes"/*.csv; do
    cvr=$(basename "$f" .csv)
    "$BIN" outbox show --config "$WORK/config.toml" --authority "$cvr" --date 2026-01-02 \
        2>/dev/null | sed 's/.*<h:Haendelse>\([a-z]*\)<.*<h:Type>\([A-Z]*\)<.*<h:Nummer>\([0-9]*\)<.*/\1;\2;\3/' >"$WORK/got.csv"
    if ! cmp -s <(tail -n +2 "$f") "$WORK/got.csv"; then
        echo "FAIL: authority $cvr: the batch differs from the lists' changes" >&2
        exit 1
    fi
done
events=$(cat "$WORK/changes"/*.csv | grep -vc '^haendelse')

"$BIN" publish --config "$WORK/config.toml" --to "dir:$WORK/envelopes" >/dev/null
find "$WORK/envelopes" -name '*.xml' | sed 's/.*-\([0-9a-f-]\{36\}\)\.xml$/\1/' | sort >"$WORK/expected"
start=$(date +%s%N)
link_flap pbrk 0.3 & flap=$!
code=0
"$BIN" publish --config "$WORK/config.toml" >"$WORK/publish.out" 2>"$WORK/publish.err" || code=$?
wait $flap
[[ $code -eq 0 ]] || { echo "  publish: exit $code; rerun"; "$BIN" publish --config "$WORK/config.toml" >/dev/null 2>&1; }
pub_s=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')
"$BIN" simulate drain --queue dueslag.net --idle-ms 1500 >"$WORK/got" 2>/dev/null
if ! cmp -s <(sort -u "$WORK/got") "$WORK/expected"; then
    echo "FAIL: $(comm -23 "$WORK/expected" <(sort -u "$WORK/got") | wc -l) BeskedIds never reached the dueslag" >&2
    exit 1
fi
cuts() { grep -c '"cut":true' "$WORK/$1.jsonl" || true; }
echo "bad network (latency ${LATENCY_MS} ms each way, ${RATE_KBIT} kbit/s per connection, link down ${DOWN_SECS} s mid-download and mid-publish):"
echo "  run day 1 + day 2 over OIOREST (change lists): ${run_s}s, $(cuts preg) register connections cut, $events events = the lists' changes"
echo "  publish: ${pub_s}s, $(cuts pbrk) broker connections cut, $(wc -l <"$WORK/expected") BeskedIds all delivered, $(($(wc -l <"$WORK/got") - $(wc -l <"$WORK/expected"))) duplicates"
