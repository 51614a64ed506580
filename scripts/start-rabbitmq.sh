#!/usr/bin/env bash
# Starts a private RabbitMQ node on loopback (AMQP, epmd and the Erlang
# distribution of the node and of rabbitmqctl alike), with its own data directory
# and ports, in the background; installs Debian's rabbitmq-server if missing.
#
#   eval "$(scripts/start-rabbitmq.sh DIR)"   # sets NEMSMS_DIFF_AMQP_URL, RABBITMQ_TEST_DIR
#   scripts/stop-rabbitmq.sh DIR
#
# With TLS_CERTS=CERTDIR (from `nemsms-diff simulate certs`) the node also
# listens for AMQPS like Beskedfordeler's production endpoint: client
# certificates required, SASL EXTERNAL (user = the certificate's CN),
# virtual host BF; it then also sets NEMSMS_DIFF_AMQPS_URL.
set -euo pipefail
DIR=${1:?usage: start-rabbitmq.sh DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
RMQ=/usr/lib/rabbitmq/bin
if [[ ! -x $RMQ/rabbitmq-server ]]; then
    echo "installing rabbitmq-server (Debian package)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >&2
fi
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
DIST=$(free_port)
TLS_PORT=$(free_port)
NODE="nemsms$$@localhost"
EPMD_WAS_RUNNING=no
pgrep -x epmd >/dev/null && EPMD_WAS_RUNNING=yes
cat >"$DIR/env" <<ENV
export HOME="$DIR"
export RABBITMQ_NODENAME="$NODE"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$PORT
export RABBITMQ_DIST_PORT=$DIST
export ERL_EPMD_ADDRESS=127.0.0.1
# The Erlang distribution (the node's and rabbitmqctl's) on loopback only.
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
export RABBITMQ_LOG_BASE="$DIR/log"
export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq"
export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
export RABBITMQ_PID_FILE="$DIR/pid"
export EPMD_WAS_RUNNING=$EPMD_WAS_RUNNING
ENV
# shellcheck disable=SC1091
source "$DIR/env"
echo "[]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
cat >"$DIR/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$PORT
loopback_users = none
log.console = false
# Classic queues store messages the version-2 way (the default from
# RabbitMQ 4.0; Debian's 3.10 still defaults to version 1).
classic_queue.default_version = 2
CONF
if [[ -n "${TLS_CERTS:-}" ]]; then
    certs=$(cd "$TLS_CERTS" && pwd)
    echo "[rabbitmq_auth_mechanism_ssl]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
    cat >>"$DIR/rabbitmq.conf" <<CONF
listeners.ssl.default = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $certs/ca.pem
ssl_options.certfile = $certs/server.pem
ssl_options.keyfile = $certs/server-key.pem
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
CONF
fi
nohup "$RMQ/rabbitmq-server" >"$DIR/server.out" 2>&1 &
for _ in $(seq 120); do
    if "$RMQ/rabbitmqctl" -q -n "$NODE" await_startup --timeout 2 >/dev/null 2>&1; then
        echo "export NEMSMS_DIFF_AMQP_URL=amqp://guest:guest@127.0.0.1:$PORT/%2f"
        if [[ -n "${TLS_CERTS:-}" ]]; then
            # Beskedfordeler's shape: virtual host BF, the client certificate's CN as user.
            ctl() { "$RMQ/rabbitmqctl" -q -n "$NODE" "$@" >&2; }
            ctl add_vhost BF
            ctl add_user "FOCES test client" "unused-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
            ctl clear_password "FOCES test client"
            ctl set_permissions -p BF "FOCES test client" ".*" ".*" ".*"
            ctl set_permissions -p BF guest ".*" ".*" ".*"
            echo "export NEMSMS_DIFF_AMQPS_URL=amqps://127.0.0.1:$TLS_PORT/BF?auth_mechanism=external"
            echo "export NEMSMS_DIFF_AMQP_BF_URL=amqp://guest:guest@127.0.0.1:$PORT/BF"
        fi
        echo "export RABBITMQ_TEST_DIR=$DIR"
        echo "RabbitMQ node $NODE ready on 127.0.0.1:$PORT" >&2
        exit 0
    fi
    sleep 1
done
echo "RabbitMQ did not start; see $DIR/server.out and $DIR/log" >&2
tail -20 "$DIR/server.out" >&2 || true
exit 1
