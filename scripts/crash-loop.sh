#!/usr/bin/env bash
# Crash loop: N times, start a job, SIGKILL it after a random delay, rerun it
# to the end, and compare with an uninterrupted run. Any difference fails.
#
# MODE=files (default): the national backfill (day 1 baseline + day 2) from
#   files, from an empty state; snapshots, outbox and pointers must be
#   byte-identical to the uninterrupted run.
# MODE=delta: a 3-day backfill of change lists fetched over OIOREST from the
#   register simulator (a fresh simulator per iteration, the clock pinned);
#   the same byte comparison, and every change list deleted at the Register.
# MODE=publish: publish a day's outbox to Beskedfordeler (a private RabbitMQ
#   node and the emulator); every BeskedId must reach the dueslag at least
#   once, and the duplicates are counted.
#
#   scripts/crash-loop.sh                          # N=200, 98 authorities, 6M keys
#   MODE=delta N=200 KEYS=600000 AUTHORITIES=20 scripts/crash-loop.sh
#   MODE=publish N=200 scripts/crash-loop.sh
#   scripts/crash-loop.sh --smoke                  # CI: 5 iterations on small data
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-files}
N=${N:-200}
KEYS=${KEYS:-6000000}
AUTHORITIES=${AUTHORITIES:-98}
if [[ "${1:-}" == "--smoke" ]]; then N=5; KEYS=100000; AUTHORITIES=10; fi

source scripts/build-bin.sh
WORK=$(mktemp -d)
SIM_PID= EMU_PID=
cleanup() {
    [[ -n "$SIM_PID" ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
    [[ -n "$EMU_PID" ]] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
    [[ -d "$WORK/rabbitmq" ]] && scripts/stop-rabbitmq.sh "$WORK/rabbitmq"
    rm -rf "$WORK"
}
trap cleanup EXIT
export NEMSMS_DIFF_NOW=2026-01-05T10:00:00Z  # a Monday: outside the service window

days=2
[[ $MODE == delta ]] && days=3
churn=0.001
[[ $MODE == publish ]] && churn=0.005
"$BIN" generate --out "$WORK/lists" --authorities "$AUTHORITIES" --keys "$KEYS" --days "$days" --churn "$churn" 2>/dev/null
last=2026-01-0$days

start_sim() {
    "$BIN" simulate register --data "$WORK/lists" --cert "$WORK/certs/server.pem" --key "$WORK/certs/server-key.pem" \
        --client-ca "$WORK/certs/ca.pem" --config "$WORK/config.toml" --record "$WORK/record.jsonl" >"$WORK/sim.out" 2>/dev/null &
    SIM_PID=$!
    for _ in $(seq 100); do grep -q listening "$WORK/sim.out" 2>/dev/null && break; sleep 0.05; done
    local url
    url=$(grep -o 'https://[0-9.:]*' "$WORK/sim.out")
    sed -i "s|^base_url = .*|base_url = \"$url\"|" "$WORK/config.toml"
}
stop_sim() {
    [[ -n "$SIM_PID" ]] || return 0
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
    SIM_PID=
}

# One id key for every iteration: the state is deleted between them, and
# the event ids (so the batches) depend on the key.
export ID_KEY_FILE="$WORK/id.key"
case $MODE in
files)
    scripts/make-config.sh "$WORK/lists" "$WORK/state" >"$WORK/config.toml"
    ;;
delta)
    "$BIN" simulate certs --out "$WORK/certs" 2>/dev/null
    REGISTER_URL=https://127.0.0.1:1 CERTS="$WORK/certs" LIST_MODE=delta \
        scripts/make-config.sh "$WORK/lists" "$WORK/state" >"$WORK/config.toml"
    ;;
publish)
    eval "$(scripts/start-rabbitmq.sh "$WORK/rabbitmq")"
    scripts/make-config.sh "$WORK/lists" "$WORK/state" >"$WORK/config.toml"
    printf '\n[beskedfordeler]\nurl = "%s"\ntoken = "t"\ninsecure_broker = true\nmax_backoff_ms = 500\n' "$NEMSMS_DIFF_AMQP_URL" >>"$WORK/config.toml"
    "$BIN" backfill --config "$WORK/config.toml" --from 2026-01-01 --to 2026-01-02 >/dev/null 2>&1
    "$BIN" publish --config "$WORK/config.toml" --to "dir:$WORK/envelopes" >/dev/null
    find "$WORK/envelopes" -name '*.xml' | sed 's/.*-\([0-9a-f-]\{36\}\)\.xml$/\1/' | sort >"$WORK/expected-ids"
    beskedtype=$(sed -n 's/^beskedtype = "\(.*\)"/\1/p' "$WORK/config.toml")
    "$BIN" simulate beskedfordeler --subscribe "dueslag.loop=$beskedtype" >"$WORK/emu.out" 2>&1 &
    EMU_PID=$!
    for _ in $(seq 100); do grep -q ready "$WORK/emu.out" && break; sleep 0.1; done
    ;;
*) echo "MODE must be files, delta or publish" >&2; exit 2 ;;
esac

if [[ $MODE == publish ]]; then
    JOB=("$BIN" publish --config "$WORK/config.toml")
else
    JOB=("$BIN" backfill --config "$WORK/config.toml" --from 2026-01-01 --to "$last")
fi
job() { "${JOB[@]}"; }
manifest() {
    (cd "$WORK/state" && find . -type f ! -path './reports/*' ! -name lock | LC_ALL=C sort | xargs sha256sum)
}
fresh() {
    case $MODE in
    publish)
        find "$WORK/state/outbox" -name '*.cursor' -delete
        "$BIN" simulate drain --queue dueslag.loop --idle-ms 300 >/dev/null 2>&1
        ;;
    delta) rm -rf "$WORK/state" "$WORK/record.jsonl"; stop_sim; start_sim ;;
    *) rm -rf "$WORK/state" ;;
    esac
}
check() {
    case $MODE in
    publish)
        "$BIN" simulate drain --queue dueslag.loop --idle-ms 500 >"$WORK/got" 2>/dev/null
        if ! cmp -s <(sort -u "$WORK/got") "$WORK/expected-ids"; then
            echo "missing: $(comm -23 "$WORK/expected-ids" <(sort -u "$WORK/got") | wc -l)"
            return 1
        fi
        # (check runs in a subshell: the count goes through a file)
        echo $(($(wc -l <"$WORK/got") - $(wc -l <"$WORK/expected-ids"))) >>"$WORK/duplicates"
        ;;
    *)
        cmp -s <(manifest) "$WORK/reference" || { diff <(manifest) "$WORK/reference" | head -20; return 1; }
        if [[ $MODE == delta ]]; then
            deletes=$(grep -c '"DELETE"' "$WORK/record.jsonl" || true)
            [[ $deletes -ge $((AUTHORITIES * days)) ]] || { echo "only $deletes change lists deleted"; return 1; }
        fi
        ;;
    esac
}

fresh
start=$(date +%s%N)
# The release binary has no crash points: armed, it must still complete.
# (The test build, PROFILE=dev, has them by design: its reference run is
# unarmed.)
if [[ "${PROFILE:-release}" == dev ]]; then
    job >/dev/null 2>&1 || { echo "FAIL: the reference run failed" >&2; exit 1; }
elif ! NEMSMS_DIFF_CRASH_AT=step:1 job >/dev/null 2>&1; then
    echo "FAIL: the release binary reacted to NEMSMS_DIFF_CRASH_AT (or the reference run failed)" >&2
    exit 1
fi
full=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')
duplicates=0
if [[ $MODE == publish ]]; then
    check || { echo "FAIL: the uninterrupted publish lost events" >&2; exit 1; }
    echo "reference publish: ${full}s, $(wc -l <"$WORK/expected-ids") events; $N iterations, kill after 0..${full}s"
else
    manifest >"$WORK/reference"
    echo "reference run ($MODE): ${full}s, $(wc -l <"$WORK/reference") state files; $N iterations, kill after 0..${full}s"
fi

killed=0 completed=0
for i in $(seq "$N"); do
    fresh
    delay=$(awk -v seed="$i$RANDOM" -v max="$full" 'BEGIN { srand(seed); printf "%.3f", rand() * max }')
    # --foreground: timeout kills only the job and waits until it is gone.
    if { timeout --foreground -s KILL "$delay" "${JOB[@]}" >/dev/null 2>&1; } 2>/dev/null; then
        completed=$((completed + 1))
    else
        killed=$((killed + 1))
    fi
    if ! job >/dev/null 2>&1; then
        echo "FAIL: iteration $i (killed after ${delay}s): the rerun did not complete" >&2
        exit 1
    fi
    if ! msg=$(check); then
        echo "FAIL: iteration $i (killed after ${delay}s): $msg" >&2
        exit 1
    fi
done
extra=
if [[ $MODE == publish ]]; then
    duplicates=$(awk '{s += $1} END {print s + 0}' "$WORK/duplicates")
    extra="; every BeskedId delivered at least once, $duplicates duplicates in all (the reference run's included)"
fi
echo "crash loop ($MODE): $N iterations, $killed killed mid-run, $completed finished before the kill; all $N reruns matched the uninterrupted run$extra"
