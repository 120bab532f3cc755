using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Infrastructure.Persistence;

public static class DatabaseRegistration
{
    /// <summary>
    /// Registers <typeparamref name="TContext"/> (scoped, rented from <paramref name="pool"/> and returned to it when
    /// the scope ends) on the configured provider (<c>Database:Provider</c>, <c>ConnectionStrings:Default</c>) and a
    /// start-up step that brings its schema up to date: migrations on SQL Server and PostgreSQL, create-if-missing on
    /// SQLite. <paramref name="pool"/> picks the concrete context for a provider, so each provider's migrations (kept
    /// under their own context subclass) are found.
    /// </summary>
    public static IServiceCollection AddDynamicWorkersDatabase<TContext>(
        this IServiceCollection services,
        IConfiguration configuration,
        Func<DatabaseOptions, ILoggerFactory?, ContextPool<TContext>> pool)
        where TContext : DbContext
    {
        services.AddDatabaseOptions(configuration);
        services.AddSingleton(sp => pool(sp.GetRequiredService<IOptions<DatabaseOptions>>().Value,
            sp.GetService<ILoggerFactory>()));
        services.AddScoped(sp => sp.GetRequiredService<ContextPool<TContext>>().Rent());
        services.AddSingleton<DatabaseInitializer<TContext>>();
        services.AddHostedService(sp => sp.GetRequiredService<DatabaseInitializer<TContext>>());
        services.AddSingleton<IEarlyStartupStep>(sp => sp.GetRequiredService<DatabaseInitializer<TContext>>());
        return services;
    }

    /// <summary>
    /// The configured provider, logging through <paramref name="logging"/> (the host's, so EF Core's warnings and
    /// errors reach the host's log under the <c>Logging:LogLevel:Microsoft.EntityFrameworkCore</c> level; a conflict
    /// the endpoints retry at Debug, see <see cref="ConflictsAtDebug"/>). Without one, EF Core builds a logger factory
    /// of its own for every context, which has no provider: it logged nothing at all.
    /// </summary>
    public static DbContextOptionsBuilder UseDynamicWorkersDatabase(
        this DbContextOptionsBuilder builder, DatabaseOptions options, ILoggerFactory? logging = null)
    {
        if (logging is not null)
        {
            // EF Core logs a failed command without its exception, so there a conflict cannot be told from an error.
            // The save, query or connection that failed is logged again with it, which ConflictsAtDebug can tell apart.
            builder.UseLoggerFactory(new ConflictsAtDebug(logging))
                .ConfigureWarnings(w => w.Log((RelationalEventId.CommandError, LogLevel.Debug)));
        }

        return options.Provider switch
        {
            DatabaseProvider.SqlServer => builder.UseSqlServer(options.ConnectionString),
            DatabaseProvider.Postgres => builder.UseNpgsql(PostgresConnections.Tuned(options.ConnectionString)),
            // SQLite changes a table by rebuilding it, with foreign keys off outside the migration's transaction:
            // expected.
            DatabaseProvider.Sqlite => builder.UseSqlite(options.ConnectionString)
                .AddInterceptors(SqliteBusyTimeout.Instance)
                .ConfigureWarnings(w => w.Ignore(RelationalEventId.NonTransactionalMigrationOperationWarning)),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Provider, "unknown database provider"),
        };
    }
}
