#!/usr/bin/env bash
# The benchmark (docs/benchmark.md). Starts RabbitMQ and PostgreSQL like scripts/test.sh (installing them only if
# missing), builds Release, and runs the bench console app (bench/), which starts LeaseSaga, Provisioner, Trust and
# Reaper as separate processes on a vhost and a database of its own (both removed afterwards), with the simulated
# cloud at zero latency. It prints one table and writes it to bench/results/latest.md. Bounded: the app skips the
# sections it cannot start within its 17-minute budget, the run is killed after 20 minutes (with every service it
# started), and its vhost and database are then removed here.
#   scripts/bench.sh            full run (13 to 16 minutes, as busy as the machine is, of which filling the pool-size
#                               section's pools with some 5,500 workers takes 1.5 to 3; plus the build and a ReadyToRun
#                               publish of the services, of which LeaseSaga's composite image takes about 4 minutes on 2
#                               cores; DW_BENCH_SERVICES=DIR runs already published ones from DIR/<Project>/ instead)
#   scripts/bench.sh --only pool-size,scale-out   some sections only (see docs/benchmark.md)
#   scripts/bench.sh --smoke    every section for a second or so (figures meaningless; what scripts/test.sh runs)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CONFIGURATION=Release
RUN_FILE=$ROOT/artifacts/bench/run.env

export DW_TEST_RABBITMQ_HOST=${DW_TEST_RABBITMQ_HOST:-127.0.0.1}
export DW_TEST_RABBITMQ_USER=${DW_TEST_RABBITMQ_USER:-dw}
export DW_TEST_RABBITMQ_PASSWORD=${DW_TEST_RABBITMQ_PASSWORD:-dw}
export DW_TEST_RABBITMQ_MANAGEMENT=${DW_TEST_RABBITMQ_MANAGEMENT:-http://127.0.0.1:15672}
export DW_TEST_POSTGRES=${DW_TEST_POSTGRES:-"Host=127.0.0.1;Port=5432;Username=dw;Password=dw;Database=postgres;SSL Mode=Disable"}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

log() { printf '[bench.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[bench.sh] FAILED: %s\n' "$*" >&2; exit 1; }

# shellcheck source=lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

# A run killed by the time limit could not remove its own vhost and database: remove them here (only those it named).
remove_leftovers() {
  [ -f "$RUN_FILE" ] || return 0
  local vhost database
  vhost=$(sed -n 's/^VHOST=//p' "$RUN_FILE")
  database=$(sed -n 's/^DATABASE=//p' "$RUN_FILE")
  if [[ $vhost == dw-bench-* ]]; then
    curl -fsS -u "$DW_TEST_RABBITMQ_USER:$DW_TEST_RABBITMQ_PASSWORD" -X DELETE "$DW_TEST_RABBITMQ_MANAGEMENT/api/vhosts/$vhost" >/dev/null 2>&1 || true
  fi
  if [[ $database == dw_bench_* ]]; then
    (cd /tmp && runuser -u postgres -- psql -q -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)") >/dev/null 2>&1 || true
  fi
  rm -f "$RUN_FILE"
}

ensure_packages
start_rabbitmq
start_postgres

log "building ($CONFIGURATION)"
dotnet build DynamicWorkers.sln -c "$CONFIGURATION" -nologo -v quiet -clp:ErrorsOnly || die "build"

# A full run times the services as they ship: published ReadyToRun as the Dockerfile does (LeaseSaga self-contained and
# composite, see its project file), which starts them faster than the JIT build output the smoke run uses.
# DW_BENCH_SERVICES set by the caller: run those instead.
if [[ " $* " != *" --smoke "* && -z ${DW_BENCH_SERVICES:-} ]]; then
  PUBLISH=$ROOT/artifacts/bench/publish
  rm -rf "$PUBLISH"
  for project in LeaseSaga Provisioner Trust Reaper; do
    log "publishing $project (ReadyToRun)"
    dotnet publish "src/$project/$project.csproj" -c "$CONFIGURATION" -r linux-x64 \
      -p:PublishReadyToRun=true -o "$PUBLISH/$project" -nologo -v quiet -clp:ErrorsOnly || die "publish $project"
  done
  export DW_BENCH_SERVICES=$PUBLISH
fi

log "running the benchmark $*"
status=0
timeout -k 15 1200 dotnet "bench/bin/$CONFIGURATION/net10.0/DynamicWorkers.Bench.dll" "$@" || status=$?
remove_leftovers
case $status in
  0) log "done" ;;
  124|137) die "the benchmark ran out of its 20 minutes (service logs: artifacts/bench/logs)" ;;
  *) die "the benchmark failed with exit code $status (service logs: artifacts/bench/logs)" ;;
esac
