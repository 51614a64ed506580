# Sourced by the benchmark, crash-loop and demo scripts: builds nemsms-diff
# and sets BIN to it.
#   PROFILE=release (default): the optimised build the benchmarks measure.
#   PROFILE=dev: the binary `cargo test` has already built for the
#   integration tests (`cargo test --no-run` relinks it in a second, where
#   `cargo build` would rebuild the dependencies without the
#   dev-dependencies' features); scripts/test.sh uses it for the smoke runs,
#   which check that the scripts work, not how fast, and so CI builds the
#   dependencies once instead of twice.
#   BIN=/path/to/nemsms-diff: that binary, unbuilt (to compare two builds).
if [[ -n "${BIN:-}" ]]; then
    [[ -x "$BIN" ]] || { echo "BIN=$BIN is not an executable" >&2; exit 2; }
    return 0
fi
case "${PROFILE:-release}" in
    release) cargo build --release --quiet; BIN=$PWD/target/release/nemsms-diff ;;
    dev) cargo test --no-run --quiet 2>/dev/null || cargo test --no-run; BIN=$PWD/target/debug/nemsms-diff ;;
    *) echo "PROFILE must be release or dev, not '$PROFILE'" >&2; exit 2 ;;
esac
