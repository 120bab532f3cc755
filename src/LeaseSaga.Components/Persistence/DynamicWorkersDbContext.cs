using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.LeaseSaga.Persistence;

/// <summary>
/// The service's own state (sagas and the settings ops change at run time). Quartz keeps its job store in
/// the same database, in its own <c>qrtz_</c> tables, which it creates itself.
/// </summary>
public class DynamicWorkersDbContext(DbContextOptions options) : DbContext(options)
{
    /// <summary>
    /// The pool of contexts for the configured provider. Each provider has its own migrations, kept under a subclass so
    /// EF Core finds the right set (SQLite's too, so an existing Standalone file is upgraded, not left behind).
    /// </summary>
    public static ContextPool<DynamicWorkersDbContext> Pool(DatabaseOptions options, ILoggerFactory? logging)
        => options.Provider switch
        {
            DatabaseProvider.SqlServer
                => ContextPool<DynamicWorkersDbContext>.Of<SqlServerDynamicWorkersDbContext>(options, logging),
            DatabaseProvider.Postgres
                => ContextPool<DynamicWorkersDbContext>.Of<PostgresDynamicWorkersDbContext>(options, logging),
            DatabaseProvider.Sqlite
                => ContextPool<DynamicWorkersDbContext>.Of<SqliteDynamicWorkersDbContext>(options, logging),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Provider, "unknown database provider"),
        };

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(DynamicWorkersDbContext).Assembly);
    }
}

/// <summary>Owns the SQL Server migrations (Persistence/Migrations/SqlServer).</summary>
public sealed class SqlServerDynamicWorkersDbContext(DbContextOptions options) : DynamicWorkersDbContext(options)
{
    /// <summary>
    /// SQL Server's <c>time</c> holds less than a day, and lifecycle limits run to a year: durations are ticks.
    /// </summary>
    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder)
    {
        configurationBuilder.Properties<TimeSpan>().HaveConversion<TimeSpanToTicksConverter>();
    }
}

/// <summary>Owns the PostgreSQL migrations (Persistence/Migrations/Postgres).</summary>
public sealed class PostgresDynamicWorkersDbContext(DbContextOptions options) : DynamicWorkersDbContext(options);

/// <summary>Owns the SQLite migrations (Persistence/Migrations/Sqlite).</summary>
public sealed class SqliteDynamicWorkersDbContext(DbContextOptions options) : DynamicWorkersDbContext(options)
{
    /// <summary>
    /// SQLite cannot compare DateTimeOffset text; as numbers (all UTC here) deadlines sort and compare in SQL.
    /// </summary>
    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder)
    {
        configurationBuilder.Properties<DateTimeOffset>().HaveConversion<DateTimeOffsetToBinaryConverter>();
    }
}

/// <summary>For <c>dotnet ef migrations add</c>: no database is contacted.</summary>
public sealed class SqliteDesignTimeFactory : IDesignTimeDbContextFactory<SqliteDynamicWorkersDbContext>
{
    public SqliteDynamicWorkersDbContext CreateDbContext(string[] args)
        => new(new DbContextOptionsBuilder<DynamicWorkersDbContext>().UseSqlite("Data Source=design-time.db").Options);
}

/// <summary>For <c>dotnet ef migrations add</c>: no database is contacted.</summary>
public sealed class SqlServerDesignTimeFactory : IDesignTimeDbContextFactory<SqlServerDynamicWorkersDbContext>
{
    public SqlServerDynamicWorkersDbContext CreateDbContext(string[] args)
        => new(new DbContextOptionsBuilder<DynamicWorkersDbContext>().UseSqlServer("Server=design-time").Options);
}

/// <summary>For <c>dotnet ef migrations add</c>: no database is contacted.</summary>
public sealed class PostgresDesignTimeFactory : IDesignTimeDbContextFactory<PostgresDynamicWorkersDbContext>
{
    public PostgresDynamicWorkersDbContext CreateDbContext(string[] args)
        => new(new DbContextOptionsBuilder<DynamicWorkersDbContext>().UseNpgsql("Host=design-time").Options);
}
