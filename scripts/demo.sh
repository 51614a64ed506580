#!/usr/bin/env bash
# Demo: generate two days of lists for a few authorities, snapshot day 1,
# diff it against day 2, and show the result.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/nemsms-diff
DEMO=${DEMO_DIR:-$(mktemp -d)}
echo "demo directory: $DEMO"
"$BIN" generate --out "$DEMO/lists" --authorities 5 --keys 200000 --days 2 --churn 0.001
first=$(ls "$DEMO/lists/2026-01-01" | head -1)
cvr=${first%.csv}
echo
echo "== snapshot of authority $cvr on 2026-01-01"
"$BIN" snapshot build "$DEMO/lists/2026-01-01/$first" --authority "$cvr" --date 2026-01-01 -o "$DEMO/$cvr.snap"
"$BIN" snapshot inspect "$DEMO/$cvr.snap"
echo
echo "== changes for $cvr from the snapshot to the 2026-01-02 list (first 5)"
"$BIN" diff "$DEMO/$cvr.snap" "$DEMO/lists/2026-01-02/$first" | head -6
echo
echo "== all authorities, directory against directory"
"$BIN" diff "$DEMO/lists/2026-01-01" "$DEMO/lists/2026-01-02" --out "$DEMO/changes"
