#!/usr/bin/env bash
# Crash loop: N times, start the national backfill (day 1 baseline + day 2)
# from an empty state, SIGKILL it after a random delay, rerun it to the end,
# and check that snapshots, outbox and pointers are byte-identical to an
# uninterrupted run. Any difference fails the script.
#
#   scripts/crash-loop.sh                 # N=200, 98 authorities, 6M keys
#   N=20 KEYS=200000 AUTHORITIES=10 scripts/crash-loop.sh
#   scripts/crash-loop.sh --smoke         # CI: 5 iterations on small data
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-200}
KEYS=${KEYS:-6000000}
AUTHORITIES=${AUTHORITIES:-98}
if [[ "${1:-}" == "--smoke" ]]; then N=5; KEYS=100000; AUTHORITIES=10; fi

cargo build --release --quiet
BIN=$PWD/target/release/nemsms-diff
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$BIN" generate --out "$WORK/lists" --authorities "$AUTHORITIES" --keys "$KEYS" --days 2 --churn 0.001 2>/dev/null
scripts/make-config.sh "$WORK/lists" "$WORK/state" >"$WORK/config.toml"
backfill() { "$BIN" backfill --config "$WORK/config.toml" --from 2026-01-01 --to 2026-01-02 >/dev/null 2>&1; }
manifest() {
    (cd "$WORK/state" && find . -type f ! -path './reports/*' ! -name lock | LC_ALL=C sort | xargs sha256sum)
}

start=$(date +%s%N)
backfill
full=$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')
manifest >"$WORK/reference"
n_files=$(wc -l <"$WORK/reference")
echo "reference run: ${full}s, $n_files state files; $N iterations, kill after 0..${full}s"

killed=0 completed=0
for i in $(seq "$N"); do
    rm -rf "$WORK/state"
    delay=$(awk -v seed="$i$RANDOM" -v max="$full" 'BEGIN { srand(seed); printf "%.3f", rand() * max }')
    # --foreground: timeout kills only the run and waits until it is gone.
    if { timeout --foreground -s KILL "$delay" "$BIN" backfill --config "$WORK/config.toml" \
        --from 2026-01-01 --to 2026-01-02 >/dev/null 2>&1; } 2>/dev/null; then
        completed=$((completed + 1))
    else
        killed=$((killed + 1))
    fi
    if ! backfill; then
        echo "FAIL: iteration $i (killed after ${delay}s): the rerun did not complete" >&2
        exit 1
    fi
    if ! cmp -s <(manifest) "$WORK/reference"; then
        echo "FAIL: iteration $i (killed after ${delay}s): state differs from the uninterrupted run" >&2
        diff <(manifest) "$WORK/reference" | head -20 >&2
        exit 1
    fi
done
echo "crash loop: $N iterations, $killed killed mid-run, $completed finished before the kill; all $N states identical to the uninterrupted run"
