#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets: every parser of outside
# bytes) for SECONDS each (default 600), seeded from fuzz/seeds, and prints
# executions and findings per target. Needs the nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`); a crash leaves its input under
# fuzz/artifacts/<target>/ and makes the script fail.
#
#   scripts/fuzz.sh            # 10 minutes per target
#   scripts/fuzz.sh 30         # smoke: 30 s each
#   JOBS=2 scripts/fuzz.sh     # two targets at a time
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-600}
JOBS=${JOBS:-1}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^nemsms-diff-fuzz$')
cargo +nightly fuzz build -O $targets >/dev/null 2>&1 || cargo +nightly fuzz build -O
mkdir -p logs
run_one() {
    local t=$1
    mkdir -p "corpus/$t"
    cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    if cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 -rss_limit_mb=2048 -max_len=1048576 \
        >"logs/$t.log" 2>&1; then
        status=ok
    else
        status=FOUND
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*' || echo "?")
    echo "$t: $status, $execs executions, coverage $cov, ${SECONDS_EACH}s"
    [[ $status == ok ]]
}
export -f run_one
export SECONDS_EACH
printf '%s\n' $targets | xargs -P "$JOBS" -I{} bash -c 'run_one {}'
