#!/usr/bin/env bash
# Demo: the nightly job on generated data, fetched from the register
# simulator over HTTPS with client certificates (OIOREST). Generates two
# days of lists for a few authorities, starts the simulator, runs day 1
# (baseline) and day 2, shows the summary, the outbox and one envelope,
# publishes (to the Beskedfordeler emulator on a private RabbitMQ when this
# machine has rabbitmq-server, otherwise to a directory), and prints
# `status`, `check`, `config check` and what `prune` would remove.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/build-bin.sh
DEMO=${DEMO_DIR:-$(mktemp -d)}
echo "demo directory: $DEMO"
"$BIN" generate --out "$DEMO/lists" --authorities 5 --keys 200000 --days 2 --churn 0.001
"$BIN" simulate certs --out "$DEMO/certs"
scripts/make-config.sh "$DEMO/lists" "$DEMO/state" >"$DEMO/sim.toml"
"$BIN" simulate register --data "$DEMO/lists" --config "$DEMO/sim.toml" --cert "$DEMO/certs/server.pem" \
    --key "$DEMO/certs/server-key.pem" --client-ca "$DEMO/certs/ca.pem" >"$DEMO/simulator.out" 2>&1 &
SIM_PID=$!
EMU_PID=
RABBIT=
cleanup() {
    kill $SIM_PID $EMU_PID 2>/dev/null || true
    wait $SIM_PID $EMU_PID 2>/dev/null || true
    if [[ -n $RABBIT ]]; then scripts/stop-rabbitmq.sh "$RABBIT" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q https "$DEMO/simulator.out" 2>/dev/null && break; sleep 0.1; done
cat "$DEMO/simulator.out"
REGISTER_URL=$(grep -o 'https://[0-9.:]*' "$DEMO/simulator.out") CERTS="$DEMO/certs" \
    scripts/make-config.sh "$DEMO/lists" "$DEMO/state" >"$DEMO/config.toml"
echo
echo "== day 1: the first run stores baselines"
"$BIN" run --config "$DEMO/config.toml" --date 2026-01-01 2>/dev/null
echo
echo "== day 2: one event per sign-up and sign-off"
"$BIN" run --config "$DEMO/config.toml" --date 2026-01-02 2>/dev/null
echo
echo "== the outbox"
"$BIN" outbox list --config "$DEMO/config.toml"
first=$(ls "$DEMO/lists/2026-01-01" | head -1)
echo
echo "== one envelope of authority ${first%.csv} (xmllint --format when available)"
"$BIN" outbox show --config "$DEMO/config.toml" --authority "${first%.csv}" --date 2026-01-02 --limit 1 2>/dev/null \
    | { if command -v xmllint >/dev/null; then xmllint --format -; else cat; fi; }
echo
if [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
    echo "== publish: to the Beskedfordeler emulator on a private RabbitMQ"
    RABBIT="$DEMO/rabbitmq"
    eval "$(scripts/start-rabbitmq.sh "$RABBIT")"
    "$BIN" simulate beskedfordeler --exchange DEMO_EXCHANGE \
        --subscribe "dueslag.demo=9a6b5c1e-3f0d-4b8e-a2c7-5d1e8f4a6b3c" >"$DEMO/emulator.out" 2>&1 &
    EMU_PID=$!
    for _ in $(seq 100); do grep -q listening "$DEMO/emulator.out" 2>/dev/null && break; sleep 0.1; done
    REGISTER_URL=$(grep -o 'https://[0-9.:]*' "$DEMO/simulator.out") CERTS="$DEMO/certs" \
        BESKEDFORDELER_URL="$NEMSMS_DIFF_AMQP_URL" EXCHANGE=DEMO_EXCHANGE \
        scripts/make-config.sh "$DEMO/lists" "$DEMO/state" >"$DEMO/config.toml"
    "$BIN" publish --config "$DEMO/config.toml" --metrics-file "$DEMO/publish.prom" 2>/dev/null
else
    echo "== publish: no rabbitmq-server here, so the envelopes go to $DEMO/published"
    "$BIN" publish --config "$DEMO/config.toml" --to "dir:$DEMO/published"
fi
echo
echo "== status"
"$BIN" status --config "$DEMO/config.toml" || true
echo
echo "== check (every state file)"
"$BIN" check --config "$DEMO/config.toml"
echo
echo "== config check"
"$BIN" config check --config "$DEMO/config.toml" | tail -3
echo
echo "== prune --dry-run --keep-days 0 (what retention would remove)"
"$BIN" prune --config "$DEMO/config.toml" --dry-run --keep-days 0 | tail -4
echo
echo "state is in $DEMO/state; try: $BIN snapshot inspect $DEMO/state/snapshots/${first%.csv}/2026-01-02.snap"
