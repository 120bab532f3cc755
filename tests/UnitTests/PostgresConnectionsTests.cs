using DynamicWorkers.Infrastructure.Persistence;
using Npgsql;

namespace DynamicWorkers.UnitTests;

public sealed class PostgresConnectionsTests
{
    [Fact]
    public void A_connection_string_gets_no_reset_on_close_and_auto_prepare_by_default()
    {
        var tuned =
            new NpgsqlConnectionStringBuilder(PostgresConnections.Tuned("Host=db;Username=dw;Password=dw;Database=dw"));

        Assert.True(tuned.NoResetOnClose);
        Assert.Equal(PostgresConnections.MaxAutoPrepare, tuned.MaxAutoPrepare);
        Assert.Equal("db", tuned.Host);
        Assert.Equal("dw", tuned.Password);
    }

    [Theory]
    [InlineData("Host=db;No Reset On Close=false;Max Auto Prepare=0")]
    [InlineData("Host=db;NoResetOnClose=false;MaxAutoPrepare=0")]
    public void What_the_connection_string_names_itself_wins(string connectionString)
    {
        var tuned = new NpgsqlConnectionStringBuilder(
            PostgresConnections.Tuned(connectionString, c => c.ApplicationName = "scheduler"));

        Assert.False(tuned.NoResetOnClose);
        Assert.Equal(0, tuned.MaxAutoPrepare);
        Assert.Equal("scheduler", tuned.ApplicationName);
    }
}
