#!/usr/bin/env bash
# Private servers for the chaos run, so that restarting "the broker" and "the database" never touches the
# shared RabbitMQ (5672) and PostgreSQL (5432) that other runs use: a second RabbitMQ node
# (dwchaos@localhost, AMQP on 127.0.0.1:5673, no plugins, data under /tmp/dw-chaos) and a second
# PostgreSQL cluster (15/dwchaos on 127.0.0.1:5433), each with the test login dw/dw.
#   chaos-servers.sh start             fresh RabbitMQ node (wiped) and the PostgreSQL cluster, both running
#   chaos-servers.sh restart-rabbitmq  stop the node and start it again (durable queues and messages kept)
#   chaos-servers.sh restart-postgres  immediate stop (a crash: recovery on start) and start again
#   chaos-servers.sh stop              stop both
# A restart is verified: the old process is gone and a new one runs; it prints "rabbitmq-pid OLD -> NEW" or
# "postgres-pid OLD -> NEW" on stdout for the chaos report. Any failure stops the script with a non-zero exit.
# Needs root (rabbitmq-server switches to the rabbitmq user; pg_ctlcluster runs as postgres).
set -euo pipefail

RABBIT_NODE=dwchaos@localhost
RABBIT_PORT=${DW_CHAOS_RABBITMQ_PORT:-5673}
RABBIT_DIR=/tmp/dw-chaos/rabbitmq
PG_PORT=${DW_CHAOS_POSTGRES_PORT:-5433}
PG_VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
PG_CLUSTER=dwchaos

log() { printf '[chaos-servers %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# shellcheck source=lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

gone() { ! kill -0 "$1" 2>/dev/null; }

rabbit() {
  (cd /tmp && env RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$((RABBIT_PORT + 20000)) \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE=$RABBIT_DIR/mnesia RABBITMQ_LOG_BASE=$RABBIT_DIR/log \
    RABBITMQ_ENABLED_PLUGINS_FILE=$RABBIT_DIR/enabled_plugins RABBITMQ_PID_FILE=$RABBIT_DIR/pid "$@")
}

# The node's Erlang VM, found by its environment rather than by a probe that a busy node could fail to answer.
rabbit_pid() {
  local p
  for p in $(pgrep -x beam.smp); do
    # No pipe: under pipefail, a reader that stops at the first match fails the pipeline when the writer gets SIGPIPE.
    if grep -qxz "RABBITMQ_NODENAME=$RABBIT_NODE" "/proc/$p/environ" 2>/dev/null; then echo "$p"; return; fi
  done
}

rabbit_running() { rabbitmqctl -q -n $RABBIT_NODE await_startup --timeout 1 >/dev/null 2>&1; }

# Stops the node if its VM runs, and waits until that process is gone.
rabbit_stop() {
  local pid
  pid=$(rabbit_pid)
  [ -n "$pid" ] || return 0
  rabbitmqctl -q -n $RABBIT_NODE stop >/dev/null || die "rabbitmqctl stop of $RABBIT_NODE (pid $pid)"
  wait_for "RabbitMQ pid $pid exited" 60 gone "$pid"
}

rabbit_start() {
  [ -z "$(rabbit_pid)" ] || die "RabbitMQ node $RABBIT_NODE already runs (pid $(rabbit_pid))"
  rabbit rabbitmq-server -detached >/dev/null || die "rabbitmq-server -detached for $RABBIT_NODE"
  wait_for "RabbitMQ node $RABBIT_NODE is up" 90 rabbit_running
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
  log "RabbitMQ node $RABBIT_NODE on 127.0.0.1:$RABBIT_PORT (pid $(rabbit_pid))"
}

rabbit_restart() {
  local old new
  old=$(rabbit_pid)
  [ -n "$old" ] || die "RabbitMQ node $RABBIT_NODE is not running: nothing to restart"
  rabbit_stop
  rabbit_start
  new=$(rabbit_pid)
  [ -n "$new" ] && [ "$new" != "$old" ] || die "RabbitMQ pid did not change ($old -> ${new:-none})"
  log "RabbitMQ node restarted"
  echo "rabbitmq-pid $old -> $new"
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }
pg_exists() { pg_lsclusters -h | awk -v v="$PG_VERSION" -v c=$PG_CLUSTER '$1 == v && $2 == c {found = 1} END {exit !found}'; }
pg_online() { pg_lsclusters -h | awk -v v="$PG_VERSION" -v c=$PG_CLUSTER '$1 == v && $2 == c && $4 == "online" {found = 1} END {exit !found}'; }

# The postmaster's pid, from its own pid file (empty when it does not run).
pg_pid() {
  local data pid
  data=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c=$PG_CLUSTER '$1 == v && $2 == c {print $6}')
  [ -s "$data/postmaster.pid" ] || return 0
  pid=$(head -1 "$data/postmaster.pid")
  if kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

pg_start() {
  if ! pg_exists; then
    (cd /tmp && pg_createcluster "$PG_VERSION" $PG_CLUSTER -p "$PG_PORT" >/dev/null) || die "pg_createcluster $PG_VERSION $PG_CLUSTER"
    # Six services plus the test keep connection pools.
    echo "max_connections = 300" >>"/etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf"
    echo "listen_addresses = '127.0.0.1'" >>"/etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf"
  fi
  pg_online || pg_ctlcluster "$PG_VERSION" $PG_CLUSTER start || die "pg_ctlcluster $PG_VERSION $PG_CLUSTER start"
  wait_for "PostgreSQL $PG_VERSION/$PG_CLUSTER is ready" 60 pg_ready
  if [ "$(cd /tmp && runuser -u postgres -- psql -p "$PG_PORT" -tAc "SELECT 1 FROM pg_roles WHERE rolname='dw'")" != 1 ]; then
    (cd /tmp && runuser -u postgres -- psql -q -p "$PG_PORT" -c "CREATE ROLE dw LOGIN PASSWORD 'dw' CREATEDB") || die "create role dw"
  fi
  log "PostgreSQL $PG_VERSION/$PG_CLUSTER on 127.0.0.1:$PG_PORT (pid $(pg_pid))"
}

pg_stop() { # MODE
  local pid
  pid=$(pg_pid)
  [ -n "$pid" ] || return 0
  pg_ctlcluster "$PG_VERSION" $PG_CLUSTER stop -m "$1" || die "pg_ctlcluster $PG_VERSION $PG_CLUSTER stop -m $1"
  wait_for "PostgreSQL pid $pid exited" 60 gone "$pid"
}

pg_restart() {
  local old new
  old=$(pg_pid)
  [ -n "$old" ] || die "PostgreSQL $PG_VERSION/$PG_CLUSTER is not running: nothing to restart"
  pg_stop immediate
  pg_start
  new=$(pg_pid)
  [ -n "$new" ] && [ "$new" != "$old" ] || die "PostgreSQL pid did not change ($old -> ${new:-none})"
  echo "postgres-pid $old -> $new"
}

case "${1:-}" in
  start) rabbit_fresh; pg_start ;;
  restart-rabbitmq) rabbit_restart ;;
  restart-postgres) pg_restart ;;
  stop) rabbit_stop; pg_stop fast; log "stopped" ;;
  *) echo "usage: $0 start|restart-rabbitmq|restart-postgres|stop" >&2; exit 2 ;;
esac
