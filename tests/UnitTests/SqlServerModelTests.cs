using DynamicWorkers.LeaseSaga.Persistence;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.UnitTests;

/// <summary>SQL Server cannot run here: what its model maps is checked without a server.</summary>
public sealed class SqlServerModelTests
{
    [Fact]
    public void Every_duration_is_stored_as_ticks_so_a_limit_of_a_year_fits()
    {
        using var db = new SqlServerDesignTimeFactory().CreateDbContext([]);
        var durations = db.Model.GetEntityTypes().SelectMany(e => e.GetProperties())
            .Where(p => (Nullable.GetUnderlyingType(p.ClrType) ?? p.ClrType) == typeof(TimeSpan)).ToList();

        // SQL Server's time type holds less than a day; MaxWorkerAge defaults to three.
        Assert.Equal(4, durations.Count);
        Assert.All(durations, p => Assert.Equal("bigint", p.GetColumnType()));
        // The fair-share batch reads the overrides with ADO and converts them with the model's converter.
        Assert.All(durations, p => Assert.Equal(TimeSpan.FromDays(3),
            p.GetTypeMapping().Converter?.ConvertFromProvider(TimeSpan.FromDays(3).Ticks)));
    }
}
