#!/usr/bin/env bash
# A simulated day of demand (sim/, docs/operations.md): the real lease and worker state machines,
# allocation and pool keeper on the in-memory bus with SQLite and a virtual clock, a trace of lease requests replayed
# against fixed hot targets and the adaptive one. Needs no broker and no database server. Writes
# bench/results/simulation.md (the table and whether the adaptive target met its goal) and simulation.svg (the plot).
#   scripts/simulate.sh                                   the committed working day (sim/traces/working-day.csv)
#   scripts/simulate.sh --trace my.csv --fixed 0,4,8      your own trace (CSV: offset[,instance[,duration]])
#   scripts/simulate.sh --hours 6 --outage 03:00+01:00 --adaptive 0.05,0.02 --out /tmp/sim
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build sim/Simulator.csproj -c Release -nologo -v quiet -clp:ErrorsOnly
exec dotnet sim/bin/Release/net10.0/DynamicWorkers.Simulator.dll "$@"
