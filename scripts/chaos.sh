#!/usr/bin/env bash
# The full chaos run (docs/guarantees.md): two LeaseSaga, two Provisioner, one Trust and one Reaper as processes on a
# private RabbitMQ node and PostgreSQL cluster (scripts/chaos-servers.sh; the shared servers are never touched),
# 5 % provisioning and trust failures, each instance holding several leases at once, every lease request published
# twice, a service killed with kill -9 every few seconds (each kind once first, then at random), RabbitMQ restarted
# once and PostgreSQL once, each fault verified by pid; then the invariant check. Also the 5,000-request flood
# against a full pool (on the shared servers, in a vhost and database of its own). Prints the figures (leases,
# kills, restarts, violations, every fault with its time) and exits non-zero on any violation or unverified fault.
#   DW_CHAOS_LOAD_SECONDS (300)  DW_CHAOS_INSTANCES (20)  DW_CHAOS_LEASES_PER_INSTANCE (3)
#   DW_CHAOS_KILL_EVERY_SECONDS (3)  DW_FLOOD_REQUESTS (5000)
# Needs root and the servers of scripts/test.sh (run that once first); takes about 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

export DW_CHAOS_LOAD_SECONDS=${DW_CHAOS_LOAD_SECONDS:-300}
export DW_CHAOS_INSTANCES=${DW_CHAOS_INSTANCES:-20}
export DW_CHAOS_KILL_EVERY_SECONDS=${DW_CHAOS_KILL_EVERY_SECONDS:-3}
export DW_FLOOD_REQUESTS=${DW_FLOOD_REQUESTS:-5000}
export DW_TEST_RABBITMQ_HOST=${DW_TEST_RABBITMQ_HOST:-127.0.0.1}
export DW_TEST_RABBITMQ_USER=${DW_TEST_RABBITMQ_USER:-dw}
export DW_TEST_RABBITMQ_PASSWORD=${DW_TEST_RABBITMQ_PASSWORD:-dw}
export DW_TEST_POSTGRES=${DW_TEST_POSTGRES:-"Host=127.0.0.1;Port=5432;Username=dw;Password=dw;Database=postgres;SSL Mode=Disable"}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

dotnet build DynamicWorkers.sln -c Release -nologo -v quiet -clp:ErrorsOnly
rm -f artifacts/chaos-report.txt artifacts/flood-report.txt
status=0
dotnet test tests/IntegrationTests -c Release --no-build -nologo \
  --filter "FullyQualifiedName~Reliability.ChaosTests|FullyQualifiedName~Reliability.OverloadTests" \
  --logger "console;verbosity=minimal" || status=$?

echo
cat artifacts/chaos-report.txt 2>/dev/null || echo "chaos run: no report (the run failed before its check; see the output above)"
cat artifacts/flood-report.txt 2>/dev/null || echo "flood: no report (see the output above)"
echo "service logs of the chaos run: artifacts/chaos-logs/"
exit $status
