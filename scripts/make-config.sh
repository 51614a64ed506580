#!/usr/bin/env bash
# Writes a config for every authority of a generated data set:
#   scripts/make-config.sh LISTS_DIR STATE_DIR > config.toml
# With REGISTER_URL=https://127.0.0.1:PORT and CERTS=DIR (from
# `nemsms-diff simulate certs`), the lists come from the register over
# OIOREST; LIST_MODE=delta makes every authority a change-list authority.
# ID_KEY_FILE=PATH names the id key (default: in the state directory).
# With BESKEDFORDELER_URL=amqp://… (a loopback test broker, e.g. the
# emulator's RabbitMQ) it writes a [beskedfordeler] section (EXCHANGE,
# TOKEN optional); otherwise the section is there, commented out.
# KEEP_DAYS=N sets [retention] keep_days (default 90).
# Absolute paths, so the config can live anywhere.
set -euo pipefail
lists=$(cd "$1" && pwd)
state=$(realpath -m "$2") # absolute, as the header says
first_day=$(ls "$lists" | head -1)
if [[ -n "${REGISTER_URL:-}" ]]; then
    certs=$(cd "${CERTS:?CERTS=DIR is needed with REGISTER_URL}" && pwd)
    cat <<TOML
state_dir = "$state"
source = "oiorest"

[register]
base_url = "$REGISTER_URL"
ca_cert = "$certs/ca.pem"
client_cert = "$certs/client.pem"
client_key = "$certs/client-key.pem"
retries = ${RETRIES:-8}
max_backoff_secs = 1
TOML
else
    cat <<TOML
state_dir = "$state"
source = "file://$lists/{date}/{authority}.csv"
TOML
fi
echo
sed -n '/^\[envelope\]/,/^sikkerhedsklassificering/p' "$(dirname "$0")/../fixtures/config.example.toml"
# ID_KEY_FILE: keep the id key outside the state (the crash loop deletes
# the state between iterations; a new key would give new event ids).
if [[ -n "${ID_KEY_FILE:-}" ]]; then
    printf 'id_key_file = "%s"\n' "$ID_KEY_FILE"
fi
echo
if [[ -n "${BESKEDFORDELER_URL:-}" ]]; then
    cat <<TOML
[beskedfordeler]
url = "$BESKEDFORDELER_URL"
exchange = "${EXCHANGE:-AFSEND_BESKED_EXCHANGE}"
token = "${TOKEN:-demo-token}"
insecure_broker = true
TOML
else
    cat <<'TOML'
# [beskedfordeler]  (BESKEDFORDELER_URL=amqp://… fills this in)
# url = "amqps://beskedfordeler.example/BF?auth_mechanism=external"
# exchange = "AFSEND_BESKED_EXCHANGE"
TOML
fi
printf '\n[retention]\nkeep_days = %d\n' "${KEEP_DAYS:-90}"
i=0
for f in "$lists/$first_day"/*.csv; do
    i=$((i + 1))
    cvr=$(basename "$f" .csv)
    printf '\n[[authority]]\ncvr = "%s"\nname = "Kommune %d"\nregister_sysid = "%d"\nlist_mode = "%s"\n' \
        "$cvr" "$i" $((100000 + i)) "${LIST_MODE:-full}"
done
