#!/bin/bash
# The db-init container of docker-compose.yml: runs init.sql as sa against the sqlserver service, once.
# Secrets come from the environment (MSSQL_SA_PASSWORD, DW_DB_USER, DW_DB_PASSWORD), never from the repository.
set -euo pipefail

: "${MSSQL_SA_PASSWORD:?}" "${DW_DB_USER:?}" "${DW_DB_PASSWORD:?}"
DW_DB_NAME=${DW_DB_NAME:-DynamicWorkers}

sqlcmd=/opt/mssql-tools18/bin/sqlcmd
[ -x "$sqlcmd" ] || sqlcmd=/opt/mssql-tools/bin/sqlcmd

# A quote in the password would end the SQL string literal: double it.
password=${DW_DB_PASSWORD//\'/\'\'}

# The password goes through the environment, not the command line (where ps would show it).
export SQLCMDPASSWORD=$MSSQL_SA_PASSWORD
# -C: trust the server's self-signed certificate (traffic stays on the compose network); -b: fail on SQL errors.
exec "$sqlcmd" -C -b -S "${MSSQL_HOST:-sqlserver}" -U sa -i /scripts/init.sql \
  -v DbName="$DW_DB_NAME" DbUser="$DW_DB_USER" DbPassword="$password"
