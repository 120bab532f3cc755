using System.Data.Common;
using Npgsql;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// How every PostgreSQL connection pool of a service is set up. A service runs the same few dozen statements
/// thousands of times a second, so by default (what the connection string names itself wins):
/// <list type="bullet">
/// <item><c>No Reset On Close</c>: a connection back in the pool is not reset with <c>DISCARD ALL</c> (a round trip
/// per use, and it drops the prepared statements); nothing here relies on session state.</item>
/// <item><c>Max Auto Prepare</c> 64: a statement run a few times is prepared, so the server parses and plans it once
/// per connection instead of every time.</item>
/// </list>
/// </summary>
public static class PostgresConnections
{
    public const int MaxAutoPrepare = 64;

    public static string Tuned(string connectionString, Action<NpgsqlConnectionStringBuilder>? configure = null)
    {
        var named = new DbConnectionStringBuilder { ConnectionString = connectionString };
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (!named.ContainsKey("No Reset On Close") && !named.ContainsKey("NoResetOnClose"))
        {
            builder.NoResetOnClose = true;
        }

        if (!named.ContainsKey("Max Auto Prepare") && !named.ContainsKey("MaxAutoPrepare"))
        {
            builder.MaxAutoPrepare = MaxAutoPrepare;
        }

        configure?.Invoke(builder);
        return builder.ConnectionString;
    }
}
