using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// Brings the schema up to date before any hosted service starts (the bus and the scheduler need the tables):
/// a context with migrations is migrated, and EF Core's migration lock lets several processes start at once.
/// A context without migrations (a test's) is created from its model in an empty database.
/// </summary>
public sealed class DatabaseInitializer<TContext>(
    IServiceScopeFactory scopes,
    IOptions<DatabaseOptions> options,
    ILogger<DatabaseInitializer<TContext>> logger) : IHostedLifecycleService, IEarlyStartupStep
    where TContext : DbContext
{
    Task? _schema;

    /// <summary>
    /// Starts the schema step now, on another thread, instead of when the host starts (see
    /// <see cref="IEarlyStartupStep"/>).
    /// </summary>
    public void Begin(CancellationToken cancellationToken)
        => _schema ??= Task.Run(() => DatabaseStartup.WhenReachableAsync(InitializeAsync, logger, cancellationToken),
            cancellationToken);

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        // Begun early by HostRunner; begun now by a host that did not (a test's).
        Begin(cancellationToken);
        return _schema!.WaitAsync(cancellationToken);
    }

    async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<TContext>();
        if (options.Value.Provider == DatabaseProvider.Sqlite)
        {
            // In WAL mode readers do not wait for the writer.
            await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;", cancellationToken);
        }

        if (db.Database.GetMigrations().Any())
        {
            if (options.Value.Provider == DatabaseProvider.Postgres)
            {
                await PrepareOnPostgresAsync(db, cancellationToken);
            }

            // The usual start finds every migration applied, which one read of the history table says, whereas
            // MigrateAsync would also take the migration lock (copies starting together would wait on each other) and
            // check the model against the snapshot (scripts/test.sh does that); a database that does not exist yet has
            // no migration applied, and MigrateAsync creates it (on PostgreSQL it was created above).
            if ((await db.Database.GetPendingMigrationsAsync(cancellationToken)).Any())
            {
                await db.Database.MigrateAsync(cancellationToken);
            }
        }
        else
        {
            await db.Database.EnsureCreatedAsync(cancellationToken);
        }

        logger.LogInformation("Database schema of {Context} is up to date ({Provider})", typeof(TContext).Name,
            options.Value.Provider);
    }

    /// <summary>
    /// Npgsql finds a missing migration history table by reading it, and EF Core logs that read as a failed command
    /// (dotnet/efcore#37328), and a missing database as a failed connection: an error in the log of every first start.
    /// Both are created first instead, so the reads find them empty. A copy starting at the same time may create them
    /// too: Npgsql ignores the errors of a concurrent creation of either, and a database the other copy created first
    /// is used as it is. SQL Server and SQLite look the table up rather than read it.
    /// </summary>
    static async Task PrepareOnPostgresAsync(TContext db, CancellationToken cancellationToken)
    {
        var creator = db.GetService<IRelationalDatabaseCreator>();
        if (!await creator.ExistsAsync(cancellationToken))
        {
            try
            {
                await creator.CreateAsync(cancellationToken);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateDatabase)
            {
                // A copy starting beside this one created it first (EF Core has logged the failed command, at Debug).
            }
        }

        await db.GetService<IHistoryRepository>().CreateIfNotExistsAsync(cancellationToken);
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
