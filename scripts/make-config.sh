#!/usr/bin/env bash
# Writes a config for every authority of a generated data set:
#   scripts/make-config.sh LISTS_DIR STATE_DIR > config.toml
# (absolute paths, so the config can live anywhere).
set -euo pipefail
lists=$(cd "$1" && pwd)
state=$2
first_day=$(ls "$lists" | head -1)
sed -n '/^\[envelope\]/,/^sikkerhedsklassificering/p' "$(dirname "$0")/../fixtures/config.example.toml" >/tmp/.envelope.$$
cat <<TOML
state_dir = "$state"
source = "file://$lists/{date}/{authority}.csv"
TOML
cat /tmp/.envelope.$$
rm -f /tmp/.envelope.$$
i=0
for f in "$lists/$first_day"/*.csv; do
    i=$((i + 1))
    cvr=$(basename "$f" .csv)
    printf '\n[[authority]]\ncvr = "%s"\nname = "Kommune %d"\nregister_sysid = "%d"\n' "$cvr" "$i" $((100000 + i))
done
