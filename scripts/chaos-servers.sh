#!/usr/bin/env bash
# Private servers for the chaos run, so that restarting "the broker" and "the database" never touches the
# shared RabbitMQ (5672) and PostgreSQL (5432) that other runs use: a second RabbitMQ node
# (dwchaos@localhost, AMQP on 127.0.0.1:5673, no plugins, data under /tmp/dw-chaos) and a second
# PostgreSQL cluster (15/dwchaos on 127.0.0.1:5433), each with the test login dw/dw.
#   chaos-servers.sh start             fresh RabbitMQ node (wiped) and the PostgreSQL cluster, both running
#   chaos-servers.sh restart-rabbitmq  stop the node and start it again (durable queues and messages kept)
#   chaos-servers.sh restart-postgres  immediate stop (a crash: recovery on start) and start again
#   chaos-servers.sh stop              stop both
# Needs root (rabbitmq-server switches to the rabbitmq user; pg_ctlcluster runs as postgres).
set -euo pipefail

RABBIT_NODE=dwchaos@localhost
RABBIT_PORT=${DW_CHAOS_RABBITMQ_PORT:-5673}
RABBIT_DIR=/tmp/dw-chaos/rabbitmq
PG_PORT=${DW_CHAOS_POSTGRES_PORT:-5433}
PG_VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
PG_CLUSTER=dwchaos

log() { printf '[chaos-servers %s] %s\n' "$(date +%T)" "$*" >&2; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls until COMMAND succeeds or the deadline passes.
wait_for() {
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "$what did not come up within ${seconds}s"; exit 1; }
    sleep 0.5
  done
}

rabbit() {
  (cd /tmp && env RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$((RABBIT_PORT + 20000)) \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE=$RABBIT_DIR/mnesia RABBITMQ_LOG_BASE=$RABBIT_DIR/log \
    RABBITMQ_ENABLED_PLUGINS_FILE=$RABBIT_DIR/enabled_plugins RABBITMQ_PID_FILE=$RABBIT_DIR/pid "$@")
}

rabbit_running() { rabbitmqctl -q -n $RABBIT_NODE await_startup --timeout 1 >/dev/null 2>&1; }

rabbit_stop() {
  if rabbit_running; then rabbitmqctl -q -n $RABBIT_NODE stop >/dev/null 2>&1 || true; fi
}

rabbit_start() {
  rabbit rabbitmq-server -detached >/dev/null 2>&1 || true
  wait_for "RabbitMQ node $RABBIT_NODE" 90 rabbit_running
}

rabbit_fresh() {
  rabbit_stop
  rm -rf "$RABBIT_DIR"
  mkdir -p "$RABBIT_DIR/mnesia" "$RABBIT_DIR/log"
  echo '[].' >"$RABBIT_DIR/enabled_plugins"   # no management plugin: it would want the shared node's port
  chown -R rabbitmq:rabbitmq "$RABBIT_DIR"
  rabbit_start
  rabbitmqctl -q -n $RABBIT_NODE add_user dw dw >/dev/null
  rabbitmqctl -q -n $RABBIT_NODE set_permissions -p / dw '.*' '.*' '.*' >/dev/null
  log "RabbitMQ node $RABBIT_NODE on 127.0.0.1:$RABBIT_PORT"
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_start() {
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
    (cd /tmp && pg_createcluster "$PG_VERSION" $PG_CLUSTER -p "$PG_PORT" >/dev/null)
    # Six services plus the test keep connection pools.
    echo "max_connections = 300" >>"/etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf"
    echo "listen_addresses = '127.0.0.1'" >>"/etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf"
  fi
  pg_ready || pg_ctlcluster "$PG_VERSION" $PG_CLUSTER start || true
  wait_for "PostgreSQL $PG_VERSION/$PG_CLUSTER" 60 pg_ready
  if [ "$(cd /tmp && runuser -u postgres -- psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_roles WHERE rolname='dw'")" != 1 ]; then
    (cd /tmp && runuser -u postgres -- psql -q -p "$PG_PORT" -c "CREATE ROLE dw LOGIN PASSWORD 'dw' CREATEDB")
  fi
  log "PostgreSQL $PG_VERSION/$PG_CLUSTER on 127.0.0.1:$PG_PORT"
}

case "${1:-}" in
  start) rabbit_fresh; pg_start ;;
  restart-rabbitmq) rabbit_stop; rabbit_start; log "RabbitMQ node restarted" ;;
  restart-postgres) pg_ctlcluster "$PG_VERSION" $PG_CLUSTER stop -m immediate || true; pg_start ;;
  stop) rabbit_stop; pg_ctlcluster "$PG_VERSION" $PG_CLUSTER stop >/dev/null 2>&1 || true; log "stopped" ;;
  *) echo "usage: $0 start|restart-rabbitmq|restart-postgres|stop" >&2; exit 2 ;;
esac
