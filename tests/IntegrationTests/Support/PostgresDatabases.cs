using Npgsql;

namespace DynamicWorkers.Testing;

/// <summary>Shared by the tests and the benchmark (linked into <c>bench/</c>): removing a database of their
/// own.</summary>
public static class PostgresDatabases
{
    public static async Task DropAsync(string adminConnectionString, string name)
    {
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(adminConnectionString);
        await connection.OpenAsync();
        async Task DropAsync(string options)
        {
            await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\"{options}", connection);
            await command.ExecuteNonQueryAsync();
        }

        try
        {
            await DropAsync(" WITH (FORCE)");
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            // FORCE may not end another role's session: an autovacuum worker busy in the database (a clean-clone run
            // failed on it). A plain drop ends autovacuum workers itself.
            await DropAsync("");
        }
    }
}
