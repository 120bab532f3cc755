using System.Data.Common;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// SQLite has one writer at a time. Without a busy timeout, Microsoft.Data.Sqlite answers a locked database
/// by sleeping 150 ms per try, which collapses throughput under contention; SQLite's own busy handler
/// waits in steps of a few milliseconds instead.
/// </summary>
sealed class SqliteBusyTimeout : DbConnectionInterceptor
{
    public static readonly SqliteBusyTimeout Instance = new();

    const string Pragma = "PRAGMA busy_timeout = 30000;";

    public override void ConnectionOpened(DbConnection connection, ConnectionEndEventData eventData)
    {
        using var command = connection.CreateCommand();
        command.CommandText = Pragma;
        command.ExecuteNonQuery();
    }

    public override async Task ConnectionOpenedAsync(DbConnection connection, ConnectionEndEventData eventData,
        CancellationToken cancellationToken = default)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = Pragma;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
