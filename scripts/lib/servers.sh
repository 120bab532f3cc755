# Shared by scripts/test.sh and scripts/bench.sh (wait_for also by the chaos and cluster scripts): installs what the
# tests need (only if missing), starts RabbitMQ and PostgreSQL on loopback and creates the dw logins. Every step
# checks before it acts.
# The sourcing script defines log (one line to stderr) and die (report and exit) first.

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every half second until it succeeds (then logs WHAT, a condition
# such as "RabbitMQ is up") or the deadline passes.
wait_for() {
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "not within ${seconds}s: $what"
    sleep 0.5
  done
  log "$what"
}

ensure_packages() {
  command -v dotnet >/dev/null || die "the .NET SDK is a prerequisite (dotnet not on PATH)"
  local missing=()
  dpkg -s rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
  dpkg -s postgresql >/dev/null 2>&1 || missing+=(postgresql)
  command -v curl >/dev/null || missing+=(curl)
  # The dashboard test drives Debian's Chromium through its matching chromedriver.
  dpkg -s chromium >/dev/null 2>&1 || missing+=(chromium)
  dpkg -s chromium-driver >/dev/null 2>&1 || missing+=(chromium-driver)
  if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update"
    apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]}"
  fi
  # Only to validate docker-compose.yml (no engine here); without --no-install-recommends it pulls in docker.io.
  if ! dpkg -s docker-compose >/dev/null 2>&1; then
    log "installing docker-compose"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; } \
      || die "apt-get install docker-compose"
  fi
  # promtool checks and tests deploy/prometheus's alert rules (the package's server is not started here).
  if ! command -v promtool >/dev/null; then
    log "installing prometheus (for promtool)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } \
      || die "apt-get install prometheus"
  fi
}

start_rabbitmq() {
  if ! rabbitmq-diagnostics -q check_running >/dev/null 2>&1; then
    log "starting RabbitMQ"
    rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
    # Loopback only: tests never need the broker reachable from elsewhere.
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  wait_for "RabbitMQ is up" 120 rabbitmq-diagnostics -q check_running
  # awk reads to the end: a `grep -q` that stops early can fail the pipeline under pipefail (SIGPIPE).
  rabbitmq-plugins list -e -m 2>/dev/null | awk '$1 == "rabbitmq_management" {found = 1} END {exit !found}' \
    || rabbitmq-plugins enable rabbitmq_management >/dev/null
  if ! rabbitmqctl -q list_users 2>/dev/null | awk -v u="$DW_TEST_RABBITMQ_USER" '$1 == u {found = 1} END {exit !found}'; then
    log "creating RabbitMQ user $DW_TEST_RABBITMQ_USER"
    rabbitmqctl -q add_user "$DW_TEST_RABBITMQ_USER" "$DW_TEST_RABBITMQ_PASSWORD" >/dev/null
    rabbitmqctl -q set_permissions -p / "$DW_TEST_RABBITMQ_USER" '.*' '.*' '.*' >/dev/null
  fi
  # The tests' services run as this user: a service moves an instance's message to _error with its user_id intact.
  if ! rabbitmqctl -q list_users 2>/dev/null \
    | awk -v u="$DW_TEST_RABBITMQ_USER" '$1 == u && /impersonator/ {found = 1} END {exit !found}'; then
    rabbitmqctl -q set_user_tags "$DW_TEST_RABBITMQ_USER" administrator impersonator >/dev/null
  fi
  wait_for "RabbitMQ management API is up" 60 \
    curl -fsS -u "$DW_TEST_RABBITMQ_USER:$DW_TEST_RABBITMQ_PASSWORD" http://127.0.0.1:15672/api/overview
}

start_postgres() {
  local version
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  [ -n "$version" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {found = 1} END {exit !found}'; then
    log "creating PostgreSQL cluster $version/main"
    pg_createcluster "$version" main >/dev/null
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL $version"
    pg_ctlcluster "$version" main start || true
  fi
  wait_for "PostgreSQL is up" 60 pg_isready -q -h 127.0.0.1 -p 5432
  # Six services plus the tests each keep a connection pool: the default 100 connections is too few.
  if [ "$(cd /tmp && runuser -u postgres -- psql -tAc "SHOW max_connections")" -lt 300 ]; then
    log "raising PostgreSQL max_connections to 300 (restart)"
    (cd /tmp && runuser -u postgres -- psql -q -c "ALTER SYSTEM SET max_connections = 300") || die "set max_connections"
    pg_ctlcluster "$version" main restart || die "restart PostgreSQL"
    wait_for "PostgreSQL is up" 60 pg_isready -q -h 127.0.0.1 -p 5432
  fi
  if [ "$(cd /tmp && runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='dw'" 2>/dev/null)" != 1 ]; then
    log "creating PostgreSQL role dw"
    (cd /tmp && runuser -u postgres -- psql -q -c "CREATE ROLE dw LOGIN PASSWORD 'dw' CREATEDB") || die "create role dw"
  fi
}
