#!/usr/bin/env bash
# A private three-node RabbitMQ cluster on loopback for the broker-node-loss test, so that killing a node never
# touches the shared RabbitMQ (5672) or the chaos node (5673): nodes dwquorumN@localhost (N = 1..3) with AMQP on
# 127.0.0.1:$((DW_CLUSTER_BASE_PORT + N - 1)) (default 5680..5682), no plugins, data under /tmp/dw-quorum/N, each
# with the test login dw/dw (tags administrator impersonator, as the services' tenancy needs).
#   cluster-servers.sh start     three fresh nodes (wiped), nodes 2 and 3 joined to node 1, all running
#   cluster-servers.sh pid N     the OS process id of node N's Erlang VM
#   cluster-servers.sh kill N    kill -9 node N and wait until its process is gone (fails if it is not)
#   cluster-servers.sh queues    every queue of vhost / as: name type durable auto_delete exclusive leader pid (asks a live
#                                node; a quorum queue's leader node, a classic queue's process, <node.…>, on its node)
#   cluster-servers.sh stop      stop every node and remove the data
# Needs root (rabbitmq-server switches to the rabbitmq user); the nodes share the rabbitmq user's Erlang cookie.
set -euo pipefail

BASE_PORT=${DW_CLUSTER_BASE_PORT:-5680}
ROOT=/tmp/dw-quorum
NODES=(1 2 3)

log() { printf '[cluster-servers %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

node_name() { echo "dwquorum$1@localhost"; }
node_port() { echo $((BASE_PORT + $1 - 1)); }

# shellcheck source=lib/servers.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/servers.sh"

ctl() { local n=$1; shift; rabbitmqctl -q -n "$(node_name "$n")" "$@"; }

running() { ctl "$1" await_startup --timeout 1 >/dev/null 2>&1; }

node_pid() { local pid; pid=$(cat "$ROOT/$1/pid" 2>/dev/null) || return 1; echo "$pid"; }

start_node() {
  local n=$1 dir=$ROOT/$1
  (cd /tmp && env RABBITMQ_NODENAME="$(node_name "$n")" RABBITMQ_NODE_PORT="$(node_port "$n")" \
    RABBITMQ_DIST_PORT=$(($(node_port "$n") + 20000)) RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_PID_FILE="$dir/pid" rabbitmq-server -detached >/dev/null 2>&1) || true
}

stop_all() {
  local n pid
  for n in "${NODES[@]}"; do
    if running "$n"; then ctl "$n" stop >/dev/null 2>&1 || true; fi
    pid=$(node_pid "$n" || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$ROOT"
}

start_cluster() {
  stop_all
  local n
  for n in "${NODES[@]}"; do
    mkdir -p "$ROOT/$n/mnesia" "$ROOT/$n/log"
    echo '[].' >"$ROOT/$n/enabled_plugins"   # no management plugin: it would want the shared node's port
  done
  chown -R rabbitmq:rabbitmq "$ROOT"
  for n in "${NODES[@]}"; do start_node "$n"; done
  for n in "${NODES[@]}"; do wait_for "node $(node_name "$n") is running" 120 running "$n"; done
  local out
  for n in 2 3; do
    # join_cluster logs harmless errors about the joining node's connection tables: shown only on failure.
    out=$(ctl "$n" stop_app 2>&1) || die "stop_app on $(node_name "$n"): $out"
    out=$(ctl "$n" join_cluster "$(node_name 1)" 2>&1) || die "join_cluster $(node_name "$n") to $(node_name 1): $out"
    out=$(ctl "$n" start_app 2>&1) || die "start_app on $(node_name "$n"): $out"
    wait_for "node $(node_name "$n") is running again after joining" 60 running "$n"
  done
  local members
  members=$(ctl 1 cluster_status --formatter json | grep -o '"running_nodes":\[[^]]*\]' || true)
  for n in "${NODES[@]}"; do
    grep -q "$(node_name "$n")" <<<"$members" || die "$(node_name "$n") is not a running cluster member: $members"
  done
  # Users live in the cluster's shared schema: once is enough.
  ctl 1 add_user dw dw >/dev/null || die "add_user dw"
  ctl 1 set_user_tags dw administrator impersonator >/dev/null || die "set_user_tags dw"
  ctl 1 set_permissions -p / dw '.*' '.*' '.*' >/dev/null || die "set_permissions dw"
  log "cluster of $(node_name 1), $(node_name 2), $(node_name 3) on 127.0.0.1:$(node_port 1)-$(node_port 3)"
}

kill_node() {
  local n=$1 pid
  pid=$(node_pid "$n") || die "no pid file for node $n"
  kill -0 "$pid" 2>/dev/null || die "node $n (pid $pid) is not running"
  kill -9 "$pid"
  wait_for "node $n's process $pid is gone" 10 bash -c "! kill -0 $pid"
  log "killed $(node_name "$n") (pid $pid)"
  echo "$pid"
}

list_queues() {
  local n
  for n in "${NODES[@]}"; do
    if running "$n"; then
      rabbitmqctl -s -n "$(node_name "$n")" list_queues name type durable auto_delete exclusive leader pid || die "list_queues on node $n"
      return
    fi
  done
  die "no node is running"
}

case "${1:-}" in
  start) start_cluster ;;
  pid) node_pid "${2:?node 1..3}" || die "no pid file for node $2" ;;
  kill) kill_node "${2:?node 1..3}" ;;
  queues) list_queues ;;
  stop) stop_all; log "stopped" ;;
  *) echo "usage: $0 start|pid N|kill N|queues|stop" >&2; exit 2 ;;
esac
