#!/usr/bin/env bash
# The project's test command (README, CI): formatting, lints, unit and
# integration tests (as root: the disk tests mount a tmpfs), each benchmark
# once with its assertions, and smoke runs of the benchmark and crash-loop
# scripts, all on the test build. One round of the network-fault tests runs
# inside `cargo test`; scripts/faults.sh runs five.
set -euo pipefail
cd "$(dirname "$0")/.."
# The permissive umask of a fresh machine: every file the job writes must
# still be private (tests/it/security.rs checks the modes).
umask 022

# Tools the tests use, from Debian's packages when missing.
if ! command -v xmllint >/dev/null; then
    echo "== installing libxml2-utils (xmllint)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libxml2-utils >/dev/null
fi
if [[ ! -x /usr/bin/time ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi

# Python parsers the tests use: prometheus_client (the metrics files) and
# kubernetes-validate (the Kubernetes manifests, offline, bundled schemas).
if ! python3 -c "import prometheus_client, kubernetes_validate" 2>/dev/null; then
    echo "== installing prometheus-client and kubernetes-validate (pip)"
    python3 -m pip install -q prometheus-client kubernetes-validate 2>&1 | grep -v "^WARNING: Running pip as" || true
    python3 -c "import prometheus_client, kubernetes_validate"
fi
if ! command -v systemd-analyze >/dev/null; then
    echo "== installing systemd (systemd-analyze verify)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

# A private RabbitMQ node for the Beskedfordeler tests (installed from
# Debian's packages when missing), stopped again on exit.
RABBIT_DIR=$(mktemp -d)
log=$(mktemp)
trap 'scripts/stop-rabbitmq.sh "$RABBIT_DIR"; rm -f "$log"' EXIT
echo "== starting RabbitMQ"
eval "$(scripts/start-rabbitmq.sh "$RABBIT_DIR")"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo clippy, the product alone (without the lab's sim feature)"
cargo clippy --quiet --no-default-features -- -D warnings
echo "== cargo test"
cargo test 2>&1 | tee "$log"
# The benches and the smoke runs use the test build (criterion runs each
# bench once, asserting its result, under `cargo test --bench '*'`): one build
# of the dependencies instead of a second, optimised one, about 10 minutes
# less CI. The benchmark figures come from the release build
# (`cargo bench`, the scripts without PROFILE).
echo "== benches, once each (criterion test mode, test build)"
cargo test --quiet --bench '*'
export PROFILE=dev
echo "== national benchmark, smoke"
scripts/bench-national.sh --smoke
echo "== publish benchmark, smoke"
scripts/bench-publish.sh --smoke
echo "== national publish benchmark with faults, smoke"
scripts/bench-publish-national.sh --smoke
echo "== crash loops, smoke (files, change lists over OIOREST, publish)"
scripts/crash-loop.sh --smoke
MODE=delta scripts/crash-loop.sh --smoke
MODE=publish scripts/crash-loop.sh --smoke
# One closing line with the totals of every test binary above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "== all checks passed\ntests: %d passed, %d failed\n", p, f }' "$log"
