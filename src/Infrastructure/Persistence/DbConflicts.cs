using System.Data.Common;
using Microsoft.Data.SqlClient;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// Recognises the database errors that mean "someone else got there first": worth an immediate retry.
/// </summary>
public static class DbConflicts
{
    public static bool IsConflict(Exception e)
        => e is DbUpdateConcurrencyException || (e is DbUpdateException u && IsDuplicateKey(u)) || IsBusy(e)
            || IsDeadlock(e);

    public static bool IsDuplicateKey(DbUpdateException e) => e.InnerException switch
    {
        PostgresException pg => pg.SqlState == PostgresErrorCodes.UniqueViolation,
        SqlException sql => sql.Number is 2627 or 2601,
        SqliteException lite => lite.SqliteExtendedErrorCode is 1555 or 2067, // PRIMARYKEY, UNIQUE
        _ => false,
    };

    /// <summary>
    /// Two transactions waited on each other's row locks; the database ended one, which may simply run again.
    /// </summary>
    static bool IsDeadlock(Exception e) => (e as DbException ?? e.InnerException as DbException) switch
    {
        PostgresException pg
            => pg.SqlState is PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure,
        SqlException sql => sql.Number == 1205,
        _ => false,
    };

    /// <summary>SQLite allows one writer at a time; a writer that waited past its timeout gets SQLITE_BUSY.</summary>
    static bool IsBusy(Exception e)
        => (e as SqliteException ?? e.InnerException as SqliteException)?.SqliteErrorCode is 5 or 6;
}
