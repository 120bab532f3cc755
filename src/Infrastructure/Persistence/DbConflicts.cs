using DynamicWorkers.Infrastructure.Telemetry;
using Microsoft.Data.SqlClient;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>Recognises the database errors that mean "someone else got there first": worth an immediate retry.</summary>
public static class DbConflicts
{
    public static bool IsConflict(Exception e)
        => e is DbUpdateConcurrencyException || (e is DbUpdateException u && IsDuplicateKey(u)) || IsBusy(e);

    public static bool IsDuplicateKey(DbUpdateException e) => e.InnerException switch
    {
        PostgresException pg => pg.SqlState == PostgresErrorCodes.UniqueViolation,
        SqlException sql => sql.Number is 2627 or 2601,
        SqliteException lite => lite.SqliteExtendedErrorCode is 1555 or 2067, // PRIMARYKEY, UNIQUE
        _ => false,
    };

    /// <summary>
    /// A saga's save guarded by its version: one that lost the race is counted (<c>dw_saga_conflicts_total</c>, tag
    /// <c>saga</c>) and thrown on, for the endpoint's retry.
    /// </summary>
    public static async Task<int> CountingConflicts<TSaga>(this Task<int> save)
    {
        try
        {
            return await save;
        }
        catch (DbUpdateConcurrencyException)
        {
            DwTelemetry.SagaConflicts.Add(1, new KeyValuePair<string, object?>("saga", typeof(TSaga).Name));
            throw;
        }
    }

    /// <summary>SQLite allows one writer at a time; a writer that waited past its timeout gets SQLITE_BUSY.</summary>
    static bool IsBusy(Exception e)
        => (e as SqliteException ?? e.InnerException as SqliteException)?.SqliteErrorCode is 5 or 6;
}
