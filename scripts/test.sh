#!/usr/bin/env bash
# The README's test command. Installs (only if missing) and starts RabbitMQ and PostgreSQL on
# loopback, creates the test logins, builds the solution, runs every test project and prints one
# summary line last: `tests: N passed, N failed, N skipped`. Exits non-zero on any failure or skip.
# Safe to re-run: every step checks before it acts.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CONFIGURATION=${CONFIGURATION:-Release}
RESULTS=$ROOT/artifacts/test-results

export DW_TEST_RABBITMQ_HOST=${DW_TEST_RABBITMQ_HOST:-127.0.0.1}
export DW_TEST_RABBITMQ_USER=${DW_TEST_RABBITMQ_USER:-dw}
export DW_TEST_RABBITMQ_PASSWORD=${DW_TEST_RABBITMQ_PASSWORD:-dw}
export DW_TEST_POSTGRES=${DW_TEST_POSTGRES:-"Host=127.0.0.1;Port=5432;Username=dw;Password=dw;Database=postgres;SSL Mode=Disable"}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

log() { printf '[test.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[test.sh] FAILED: %s\n' "$*" >&2; echo "tests: 0 passed, 1 failed, 0 skipped"; exit 1; }

# shellcheck source=lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

ensure_packages
start_rabbitmq
start_postgres
# BrokerNodeLossTests starts its own three RabbitMQ nodes (5680-5682); a run killed midway may have left them running.
bash "$ROOT/scripts/cluster-servers.sh" stop || die "stopping a previous run's RabbitMQ cluster (scripts/cluster-servers.sh stop)"

log "restoring tools and building ($CONFIGURATION)"
dotnet tool restore >/dev/null || die "dotnet tool restore"
dotnet build DynamicWorkers.sln -c "$CONFIGURATION" -nologo -v quiet -clp:ErrorsOnly || die "build"

# The checked-in migrations must match the model, for every provider.
for context in PostgresDynamicWorkersDbContext SqlServerDynamicWorkersDbContext SqliteDynamicWorkersDbContext; do
  dotnet ef migrations has-pending-model-changes --project src/LeaseSaga.Components --startup-project src/LeaseSaga \
    --context "$context" --configuration "$CONFIGURATION" --no-build >/dev/null 2>&1 \
    || die "the model has changes without a migration for $context (dotnet ef migrations add ... --context $context)"
done
log "migrations match the model"

# The same broker users and permissions as compose's broker-setup, with test-only passwords.
export DW_LEASE_SAGA_PASSWORD=${DW_LEASE_SAGA_PASSWORD:-dw-lease-saga} DW_PROVISIONER_PASSWORD=${DW_PROVISIONER_PASSWORD:-dw-provisioner} \
  DW_TRUST_PASSWORD=${DW_TRUST_PASSWORD:-dw-trust} DW_REAPER_PASSWORD=${DW_REAPER_PASSWORD:-dw-reaper} \
  DW_OPERATOR_PASSWORD=${DW_OPERATOR_PASSWORD:-dw-operator}
dotnet "src/Cli/bin/$CONFIGURATION/net10.0/dw.dll" broker setup \
  --management "http://$DW_TEST_RABBITMQ_USER:$DW_TEST_RABBITMQ_PASSWORD@$DW_TEST_RABBITMQ_HOST:15672" >/dev/null \
  || die "dw broker setup (the services' and the operator's broker users)"
log "broker users set up"

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
log "running tests"
status=0
dotnet test DynamicWorkers.sln -c "$CONFIGURATION" --no-build -nologo -v quiet \
  --results-directory "$RESULTS" --logger "trx" --logger "console;verbosity=normal" || status=$?

# One summary over every test project's TRX file; a skipped test counts against the run.
passed=0 failed=0 skipped=0 files=0
for trx in "$RESULTS"/*.trx; do
  [ -e "$trx" ] || continue
  files=$((files + 1))
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  get() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$counters"; }
  passed=$((passed + $(get passed)))
  failed=$((failed + $(get failed) + $(get error) + $(get timeout) + $(get aborted)))
  skipped=$((skipped + $(get notExecuted)))
done
((files > 0)) || { log "no test results were written"; failed=$((failed + 1)); }
((passed > 0)) || { log "no test passed"; failed=$((failed + 1)); }
echo "tests: $passed passed, $failed failed, $skipped skipped"
if ((status != 0 || failed > 0 || skipped > 0)); then exit 1; fi
