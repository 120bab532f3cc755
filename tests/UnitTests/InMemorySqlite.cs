using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;

namespace DynamicWorkers.UnitTests;

/// <summary>Settings for the database registration on a SQLite database in memory, and a context of one table for
/// it.</summary>
static class InMemorySqlite
{
    /// <summary>Each connection gets a database of its own, which lives as long as the connection is open.</summary>
    public static IConfiguration Settings()
        => new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["Database:Provider"] = "Sqlite",
        ["ConnectionStrings:Default"] = "Data Source=:memory:",
    }).Build();

    public sealed class Row
    {
        public int Id { get; set; }
    }

    public sealed class RowsContext(DbContextOptions<RowsContext> options) : DbContext(options)
    {
        public DbSet<Row> Rows => Set<Row>();
    }
}
