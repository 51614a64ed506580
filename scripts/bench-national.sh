#!/usr/bin/env bash
# National benchmarks, medians of several runs:
# 1. the 98-authority, 6M-key directory diff from CSV, timed side by side
#    with `sort` + `comm` (LC_ALL=C) doing the same job, checked to give the
#    same changes, and the snapshot sizes;
# 2. the nightly `run`: day 1 baseline, then day 2 (0.1 % churn) timed from a
#    copy of the day-1 state each time (parse, snapshot, diff, envelopes,
#    compressed outbox, fsyncs), and a 10 % churn stress day (~1.2M events);
# 3. the directory diff for three list shapes (key only; typed `type;nummer`
#    rows; six columns with names, quoted text and dates), each converted by
#    awk from the generated lists, next to sort+comm, DuckDB and polars
#    (Python packages, installed with pip when missing) doing the same diff,
#    each checked to find the same changes, with the ratios;
# 4. the same day-2 run with the lists fetched from the register simulator
#    over HTTPS with client certificates (OIOREST, full lists), then with the
#    simulator behind the fault proxy adding WAN_MS (20) ms each way; the
#    ratios (HTTPS / files, WAN / loopback) are medians of RUNS interleaved
#    rounds of the three.
#
#   scripts/bench-national.sh            # 98 authorities, 6M keys, 5 runs
#   scripts/bench-national.sh --smoke    # small data, 1 run: CI keeps it working
#   KEYS=1000000 RUNS=3 scripts/bench-national.sh
#   WAN_MS=40 SHAPES="typed wide" scripts/bench-national.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-6000000}
AUTHORITIES=${AUTHORITIES:-98}
RUNS=${RUNS:-5}
CHURN=${CHURN:-0.001}
if [[ "${1:-}" == "--smoke" ]]; then KEYS=60000; AUTHORITIES=10; RUNS=1; fi

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
source scripts/build-bin.sh
WORK=$(mktemp -d)
SIM_PID= PROXY_PID=
cleanup() {
    [[ -n "$PROXY_PID" ]] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
    [[ -n "$SIM_PID" ]] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "generating $AUTHORITIES authorities, $KEYS keys, churn $CHURN ..."
"$BIN" generate --out "$WORK/data" --authorities "$AUTHORITIES" --keys "$KEYS" --days 2 --churn "$CHURN" --seed 42 2>/dev/null
D1=$WORK/data/2026-01-01 D2=$WORK/data/2026-01-02
# Warm the page cache for both tools alike.
cat "$D1"/* "$D2"/* >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# time_cmd LABEL CMD...: wall seconds and peak RSS (KB) per run into $WORK/LABEL.times
time_cmd() {
    local label=$1; shift
    : >"$WORK/$label.times"
    for _ in $(seq "$RUNS"); do
        /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >/dev/null
        cat "$WORK/time.out" >>"$WORK/$label.times"
    done
}

time_cmd ours "$BIN" diff "$D1" "$D2" --out "$WORK/ours"

sort_comm() {
    mkdir -p "$WORK/comm"
    ls "$D1" | LC_ALL=C xargs -P 2 -I{} bash -c \
        'LC_ALL=C comm -3 <(tail -n +2 "$0/{}" | LC_ALL=C sort) <(tail -n +2 "$1/{}" | LC_ALL=C sort) > "$2/{}"' \
        "$D1" "$D2" "$WORK/comm"
}
export -f sort_comm
export D1 D2 WORK
time_cmd sortcomm bash -c sort_comm

# Same job, same answer: every change found by both, and nothing else.
ours_changes=$(cat "$WORK"/ours/* | grep -v '^haendelse' | awk -F';' '{print ($1=="tilmeldt"?"+":"-") $3}' | LC_ALL=C sort | md5sum)
comm_changes=$(cat "$WORK"/comm/* | awk -F'\t' '{print ($1==""?"+" $2:"-" $1)}' | LC_ALL=C sort | md5sum)
n_changes=$(cat "$WORK"/ours/* | grep -vc '^haendelse' || true)
if [[ "$ours_changes" != "$comm_changes" ]]; then
    echo "FAIL: nemsms-diff and sort+comm found different changes" >&2
    exit 1
fi
[[ "$n_changes" -gt 0 ]] || { echo "FAIL: no changes found" >&2; exit 1; }

# Snapshot size: every day-1 list as its own snapshot, and all keys as one list.
mkdir -p "$WORK/snaps"
for f in "$D1"/*.csv; do
    cvr=$(basename "$f" .csv)
    "$BIN" snapshot build "$f" --authority "$cvr" --date 2026-01-01 -o "$WORK/snaps/$cvr.snap" 2>/dev/null
done
snap_bytes=$(cat "$WORK"/snaps/*.snap | wc -c)
{ echo nummer; for f in "$D1"/*.csv; do tail -n +2 "$f"; done; } >"$WORK/all.csv"
"$BIN" snapshot build "$WORK/all.csv" --authority "$cvr" --date 2026-01-01 -o "$WORK/all.snap" 2>/dev/null
all_keys=$("$BIN" snapshot inspect "$WORK/all.snap" --json | sed 's/.*"n_cpr":\([0-9]*\),"n_cvr":\([0-9]*\).*/\1 \2/' | awk '{print $1+$2}')
all_bytes=$(wc -c <"$WORK/all.snap")
# The snapshots hold the same keys as the lists: export and compare one.
cmp <("$BIN" snapshot export "$WORK/snaps/$cvr.snap" | tail -n +2 | cut -d';' -f2 | LC_ALL=C sort) \
    <(tail -n +2 "$D1/$cvr.csv" | LC_ALL=C sort) || { echo "FAIL: snapshot export differs from its list" >&2; exit 1; }

ours_s=$(cut -d' ' -f1 "$WORK/ours.times" | median)
ours_kb=$(cut -d' ' -f2 "$WORK/ours.times" | median)
comm_s=$(cut -d' ' -f1 "$WORK/sortcomm.times" | median)
awk -v o="$ours_s" -v kb="$ours_kb" -v c="$comm_s" -v n="$n_changes" -v runs="$RUNS" -v keys="$KEYS" -v a="$AUTHORITIES" \
    -v sb="$snap_bytes" -v ab="$all_bytes" -v ak="$all_keys" 'BEGIN {
    ratio = (o > 0 ? c / o : 0)
    printf "directory diff, %d authorities, %d keys, %d changes (median of %d runs)\n", a, keys, n, runs
    printf "  nemsms-diff:     %.2f s wall, peak RSS %.0f MB\n", o, kb / 1024
    printf "  sort + comm:     %.2f s wall\n", c
    if (o == 0) printf "  ratio:           n/a (nemsms-diff took under 10 ms)\n"
    else printf "  ratio:           %.1fx faster\n", ratio
    printf "  snapshots:       %.3f bytes/key over the %d authority snapshots (%d bytes)\n", sb / keys, a, sb
    printf "                   %.3f bytes/key for all keys as one list (%d unique keys, %d bytes)\n", ab / ak, ak, ab
    printf "  targets (6M):    <= 1 s %s, >= 10x %s, < 300 MB %s\n", (o <= 1 ? "met" : "MISSED"), (ratio >= 10 ? "met" : "MISSED"), (kb < 300*1024 ? "met" : "MISSED")
}'


# --- list shapes, and other tools doing the same diff ----------------------
# The lists converted (not generated by us): typed rows, and six columns with
# a quoted name holding the other delimiter, a type, the number, a date, a
# quoted note with escaped quotes and a channel.
SHAPES=${SHAPES:-key typed wide}
for d in 2026-01-01 2026-01-02; do
    mkdir -p "$WORK/typed/$d" "$WORK/wide/$d"
    for f in "$WORK/data/$d"/*.csv; do
        b=$(basename "$f")
        awk 'NR==1 {print "type;nummer"; next} {print (length($1)==10 ? "CPR" : "CVR") ";" $1}' "$f" >"$WORK/typed/$d/$b"
        awk 'NR==1 {print "navn;type;nummer;oprettet;note;kanal"; next}
             {printf "\"Hansen, Jens %d\";%s;%s;2024-%02d-%02d;\"via \"\"borger.dk\"\"\";SMS\n", NR,
                     (length($1)==10 ? "CPR" : "CVR"), $1, NR%12+1, NR%28+1}' "$f" >"$WORK/wide/$d/$b"
    done
done
mkdir -p "$WORK/key"
ln -s "$WORK/data/2026-01-01" "$WORK/key/2026-01-01"
ln -s "$WORK/data/2026-01-02" "$WORK/key/2026-01-02"
cat "$WORK"/typed/*/* "$WORK"/wide/*/* >/dev/null

# DuckDB and polars, two threads like us; the Python start-up is timed too.
cat >"$WORK/bench_duckdb.py" <<'PY'
import sys, duckdb
d1, d2, out = sys.argv[1:4]
con = duckdb.connect(config={"threads": 2})
def src(d):
    return (f"(SELECT regexp_extract(filename, '[^/]*$') AS f, trim(nummer) AS k FROM read_csv('{d}/*.csv', "
            "filename=true, header=true, delim=';', quote='\"', escape='\"', all_varchar=true))")
con.execute(f"""COPY (
  SELECT '-' || k FROM (SELECT f, k FROM {src(d1)} EXCEPT SELECT f, k FROM {src(d2)})
  UNION ALL
  SELECT '+' || k FROM (SELECT f, k FROM {src(d2)} EXCEPT SELECT f, k FROM {src(d1)})
) TO '{out}' (HEADER false, QUOTE '')""")
PY
cat >"$WORK/bench_polars.py" <<'PY'
import sys, polars as pl
d1, d2, out = sys.argv[1:4]
def src(d):
    return pl.scan_csv(f"{d}/*.csv", separator=";", infer_schema=False, include_file_paths="p").select(
        pl.col("p").str.extract(r"([^/]*)$"), pl.col("nummer").str.strip_chars().alias("k"))
a, b = src(d1), src(d2)
off = a.join(b, on=["p", "k"], how="anti").select(pl.concat_str([pl.lit("-"), pl.col("k")]).alias("c"))
on = b.join(a, on=["p", "k"], how="anti").select(pl.concat_str([pl.lit("+"), pl.col("k")]).alias("c"))
pl.concat([off, on]).collect().write_csv(out, include_header=False)
PY
have_py=yes
python3 -c 'import duckdb, polars' 2>/dev/null \
    || pip install --quiet --break-system-packages duckdb polars >/dev/null 2>&1 \
    || pip install --quiet duckdb polars >/dev/null 2>&1 || true
python3 -c 'import duckdb, polars' 2>/dev/null || have_py=no
export POLARS_MAX_THREADS=2

# same_changes FILE: "+key"/"-key" lines, sorted, as a checksum.
norm() { LC_ALL=C sort | md5sum; }
echo "directory diff by list shape, $AUTHORITIES authorities, $KEYS keys (median of $RUNS runs, seconds; x = times slower than nemsms-diff):"
printf "  %-6s %12s %16s %16s %16s\n" shape nemsms-diff "sort + comm" duckdb polars
for shape in $SHAPES; do
    S1=$WORK/$shape/2026-01-01 S2=$WORK/$shape/2026-01-02
    col=$(head -1 "$S1/$(ls "$S1" | head -1)" | tr ';' '\n' | grep -nx nummer | cut -d: -f1)
    time_cmd "s-$shape-ours" "$BIN" diff "$S1" "$S2" --out "$WORK/s-$shape-ours"
    want=$(cat "$WORK/s-$shape-ours"/* | grep -v '^haendelse' | awk -F';' '{print ($1=="tilmeldt"?"+":"-") $3}' | norm)
    export S1 S2 col
    shape_comm() {
        mkdir -p "$WORK/s-comm"
        ls "$S1" | LC_ALL=C xargs -P 2 -I{} bash -c \
            'LC_ALL=C comm -3 <(tail -n +2 "$0/{}" | cut -d";" -f"$3" | LC_ALL=C sort) <(tail -n +2 "$1/{}" | cut -d";" -f"$3" | LC_ALL=C sort) > "$2/{}"' \
            "$S1" "$S2" "$WORK/s-comm" "$col"
    }
    export -f shape_comm
    time_cmd "s-$shape-comm" bash -c shape_comm
    got=$(cat "$WORK"/s-comm/* | awk -F'\t' '{print ($1==""?"+" $2:"-" $1)}' | norm)
    [[ "$got" == "$want" ]] || { echo "FAIL: $shape: sort+comm found other changes than nemsms-diff" >&2; exit 1; }
    tools="ours comm"
    if [[ $have_py == yes ]]; then
        time_cmd "s-$shape-duckdb" python3 "$WORK/bench_duckdb.py" "$S1" "$S2" "$WORK/s-$shape-duckdb.txt"
        [[ "$(norm <"$WORK/s-$shape-duckdb.txt")" == "$want" ]] || { echo "FAIL: $shape: DuckDB found other changes" >&2; exit 1; }
        time_cmd "s-$shape-polars" python3 "$WORK/bench_polars.py" "$S1" "$S2" "$WORK/s-$shape-polars.txt"
        [[ "$(norm <"$WORK/s-$shape-polars.txt")" == "$want" ]] || { echo "FAIL: $shape: polars found other changes" >&2; exit 1; }
        tools="ours comm duckdb polars"
    fi
    line=""
    ours_t=$(cut -d' ' -f1 "$WORK/s-$shape-ours.times" | median)
    for t in $tools; do
        v=$(cut -d' ' -f1 "$WORK/s-$shape-$t.times" | median)
        if [[ $t == ours ]]; then line+=$(printf "%10.2f s " "$v")
        else line+=$(awk -v v="$v" -v o="$ours_t" 'BEGIN {
            if (o > 0) printf "%7.2f s %5.1fx ", v, v / o; else printf "%7.2f s   n/a ", v }'); fi
    done
    [[ $have_py == yes ]] || line+="  duckdb/polars: not installed (pip failed)"
    printf "  %-6s %s\n" "$shape" "$line"
    [[ $shape == typed ]] && typed_s=$ours_t
    rm -rf "$WORK/s-comm" "$WORK/s-$shape-ours"
done
awk -v t="${typed_s:-}" 'BEGIN {
    printf "  targets (6M):    typed lists <= 0.15 s %s; every tool finds the same changes (checked)\n",
        (t == "" ? "(not run)" : (t <= 0.15 ? "met" : "MISSED"))
}'

# --- the nightly run -------------------------------------------------------
# run_day LABEL LISTS [CONFIG]: baseline day 1 once, then time day 2 RUNS times, each
# from a fresh copy of the day-1 state; checks the events the run reports.
run_day() {
    local label=$1 lists=$2
    if [[ -n "${3:-}" ]]; then cp "$3" "$WORK/$label.toml"; else
        scripts/make-config.sh "$lists" "$WORK/$label-state" >"$WORK/$label.toml"; fi
    "$BIN" run --config "$WORK/$label.toml" --date 2026-01-01 >/dev/null 2>&1
    mv "$WORK/$label-state" "$WORK/$label-day1"
    : >"$WORK/$label.times"
    for _ in $(seq "$RUNS"); do
        rm -rf "$WORK/$label-state"
        cp -a "$WORK/$label-day1" "$WORK/$label-state"
        sync
        /usr/bin/time -f "%e %M" -o "$WORK/time.out" \
            "$BIN" run --config "$WORK/$label.toml" --date 2026-01-02 >"$WORK/$label.out" 2>/dev/null
        cat "$WORK/time.out" >>"$WORK/$label.times"
    done
    # The events in the outbox are the changes the lists hold.
    local events expected
    events=$("$BIN" outbox list --config "$WORK/$label.toml" --json | grep '"2026-01-02"' \
        | sed 's/.*"n_events":\([0-9]*\).*/\1/' | awk '{s += $1} END {print s + 0}')
    expected=$("$BIN" diff "$lists/2026-01-01" "$lists/2026-01-02" --out "$WORK/$label-changes" | tail -1 | awk '{print $4 + $5}')
    if [[ "$events" != "$expected" || "$events" -eq 0 ]]; then
        echo "FAIL: $label run emitted $events events, the lists hold $expected changes" >&2
        exit 1
    fi
    local bytes
    bytes=$(cat "$WORK/$label-state"/outbox/2026-01-02/*.batch | wc -c)
    awk -v label="$label" -v s="$(cut -d' ' -f1 "$WORK/$label.times" | median)" \
        -v kb="$(cut -d' ' -f2 "$WORK/$label.times" | median)" -v n="$events" -v b="$bytes" -v runs="$RUNS" 'BEGIN {
        printf "  %-8s %8d events: %.2f s wall, peak RSS %.0f MB, outbox %.1f bytes/event (median of %d runs)\n", label, n, s, kb / 1024, b / n, runs
    }'
}

echo "nightly run, $AUTHORITIES authorities, $KEYS keys:"
run_day normal "$WORK/data"
STRESS_CHURN=${STRESS_CHURN:-0.1}
"$BIN" generate --out "$WORK/stress" --authorities "$AUTHORITIES" --keys "$KEYS" --days 2 --churn "$STRESS_CHURN" --seed 43 2>/dev/null
run_day stress "$WORK/stress"

# The register simulator serves the day-1/day-2 lists over HTTPS (mTLS).
"$BIN" simulate certs --out "$WORK/certs" 2>/dev/null
scripts/make-config.sh "$WORK/data" "$WORK/https-state" >"$WORK/sim.toml"
"$BIN" simulate register --data "$WORK/data" --config "$WORK/sim.toml" --cert "$WORK/certs/server.pem" \
    --key "$WORK/certs/server-key.pem" --client-ca "$WORK/certs/ca.pem" >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
for _ in $(seq 100); do grep -q https "$WORK/sim.out" 2>/dev/null && break; sleep 0.1; done
REGISTER_URL=$(grep -o 'https://[0-9.:]*' "$WORK/sim.out")
REGISTER_URL=$REGISTER_URL CERTS="$WORK/certs" \
    scripts/make-config.sh "$WORK/data" "$WORK/https-state" >"$WORK/https-config.toml"
run_day https "$WORK/data" "$WORK/https-config.toml"

# The same, with the simulator behind the fault proxy adding WAN_MS each way.
WAN_MS=${WAN_MS:-20}
hostport=${REGISTER_URL#https://}
"$BIN" simulate proxy --upstream "$hostport" --latency-ms "$WAN_MS" >"$WORK/proxy.out" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/proxy.out" 2>/dev/null && break; sleep 0.1; done
proxied=$(sed -n 's#.*listening on tcp://##p' "$WORK/proxy.out")
sed -e "s#^base_url = .*#base_url = \"https://$proxied\"#" -e "s#https-state#wan-state#" \
    "$WORK/https-config.toml" >"$WORK/wan-config.toml"
run_day wan "$WORK/data" "$WORK/wan-config.toml"
# The ratios come from interleaved rounds (day 2 from files, over HTTPS and
# over the WAN, one after another, RUNS times): each round's ratios, then
# their medians, so a machine that slows down or speeds up between the sets
# above does not tilt them.
day2_secs() {
    rm -rf "$WORK/$1-state"
    cp -a "$WORK/$1-day1" "$WORK/$1-state"
    sync
    local start
    start=$(date +%s%N)
    "$BIN" run --config "$WORK/$1.toml" --date 2026-01-02 >/dev/null 2>&1 || { echo "FAIL: $1 day 2 run" >&2; return 1; }
    awk -v ns="$(($(date +%s%N) - start))" 'BEGIN { printf "%.3f\n", ns / 1e9 }'
}
: >"$WORK/rounds"
for _ in $(seq "$RUNS"); do
    f=$(day2_secs normal)
    h=$(day2_secs https)
    w=$(day2_secs wan)
    echo "$f $h $w" >>"$WORK/rounds"
done
hf=$(awk '{ printf "%.3f\n", $2 / $1 }' "$WORK/rounds" | median)
wh=$(awk '{ printf "%.3f\n", $3 / $2 }' "$WORK/rounds" | median)
awk -v hf="$hf" -v wh="$wh" -v ms="$WAN_MS" -v n="$RUNS" 'BEGIN {
    printf "  ratios (median of %d interleaved rounds): HTTPS / files %.2fx (target <= 1.5x %s); %d ms WAN / loopback HTTPS %.2fx (target <= 1.5x %s)\n",
        n, hf, (hf <= 1.5 ? "met" : "MISSED"), ms, wh, (wh <= 1.5 ? "met" : "MISSED")
}'
echo "  rounds (files, HTTPS, WAN seconds): $(tr '\n' ';' <"$WORK/rounds")"
echo "  targets (6M):    day 2 (0.1 %) <= 1.5 s and < 300 MB; stress (10 %) <= 10 s; outbox <= 300 bytes/event;"
echo "                   day 2 over HTTPS from the register simulator <= 3 s and < 300 MB"
