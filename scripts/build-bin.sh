# Sourced by the benchmark, crash-loop and demo scripts: builds nemsms-diff
# and sets BIN to it.
#   PROFILE=release (default): the optimised build the benchmarks measure.
#   PROFILE=dev: the test build `cargo test` has already made; scripts/test.sh
#   uses it for the smoke runs, which check that the scripts work, not how
#   fast, and so CI builds the dependencies once instead of twice.
case "${PROFILE:-release}" in
    release) cargo build --release --quiet; BIN=$PWD/target/release/nemsms-diff ;;
    dev) cargo build --quiet; BIN=$PWD/target/debug/nemsms-diff ;;
    *) echo "PROFILE must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac
