#!/usr/bin/env bash
# Demo: the nightly job on generated data, fetched from the register
# simulator over HTTPS with client certificates (OIOREST). Generates two
# days of lists for a few authorities, starts the simulator, runs day 1
# (baseline) and day 2, shows the summary, the outbox and one envelope.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/nemsms-diff
DEMO=${DEMO_DIR:-$(mktemp -d)}
echo "demo directory: $DEMO"
"$BIN" generate --out "$DEMO/lists" --authorities 5 --keys 200000 --days 2 --churn 0.001
"$BIN" simulate certs --out "$DEMO/certs"
scripts/make-config.sh "$DEMO/lists" "$DEMO/state" >"$DEMO/sim.toml"
"$BIN" simulate register --data "$DEMO/lists" --config "$DEMO/sim.toml" --cert "$DEMO/certs/server.pem" \
    --key "$DEMO/certs/server-key.pem" --client-ca "$DEMO/certs/ca.pem" >"$DEMO/simulator.out" 2>&1 &
SIM_PID=$!
trap 'kill $SIM_PID 2>/dev/null; wait $SIM_PID 2>/dev/null' EXIT
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
echo "state is in $DEMO/state; try: $BIN snapshot inspect $DEMO/state/snapshots/${first%.csv}/2026-01-02.snap"
