using System.Data.Common;
using DynamicWorkers.Infrastructure.Configuration;
using Microsoft.Data.SqlClient;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Npgsql;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>Readiness: the configured database accepts a connection and answers a query.</summary>
public sealed class DatabaseHealthCheck(IOptions<DatabaseOptions> options) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context,
        CancellationToken cancellationToken = default)
    {
        var database = options.Value;
        try
        {
            await using var connection = Open(database);
            await connection.OpenAsync(cancellationToken);
            await using var command = connection.CreateCommand();
            command.CommandText = "SELECT 1";
            await command.ExecuteScalarAsync(cancellationToken);
            return HealthCheckResult.Healthy($"{database.Provider} answers");
        }
        catch (Exception e)
            when (e is DbException or InvalidOperationException or TimeoutException or OperationCanceledException)
        {
            return HealthCheckResult.Unhealthy($"{database.Provider}: {e.Message}", e);
        }
    }

    static DbConnection Open(DatabaseOptions database) => database.Provider switch
    {
        // The same string as the sagas' context, so the probe borrows from their pool instead of keeping one of its
        // own.
        DatabaseProvider.Postgres => new NpgsqlConnection(PostgresConnections.Tuned(database.ConnectionString)),
        DatabaseProvider.SqlServer => new SqlConnection(database.ConnectionString),
        _ => new SqliteConnection(database.ConnectionString),
    };
}
