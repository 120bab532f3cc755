using System.Net.Http.Headers;
using System.Text;
using DynamicWorkers.Testing;
using Npgsql;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>Where the real servers are: environment variables, with <c>scripts/test.sh</c>'s values as
/// defaults.</summary>
public static class TestServers
{
    public static string RabbitMqHost => Env("DW_TEST_RABBITMQ_HOST", "127.0.0.1");
    public static string RabbitMqUser => Env("DW_TEST_RABBITMQ_USER", "dw");
    public static string RabbitMqPassword => Env("DW_TEST_RABBITMQ_PASSWORD", "dw");
    public static string RabbitMqManagement => Env("DW_TEST_RABBITMQ_MANAGEMENT", "http://127.0.0.1:15672");

    /// <summary>A login that may create databases; each test run makes its own database with it.</summary>
    public static string PostgresAdmin => Env("DW_TEST_POSTGRES",
        "Host=127.0.0.1;Port=5432;Username=dw;Password=dw;Database=postgres;SSL Mode=Disable");

    static string Env(string name, string fallback)
        => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback;
}

/// <summary>A RabbitMQ virtual host of its own for one test class: no queue or exchange is shared with another
/// run.</summary>
public sealed class RabbitMqTestVirtualHost : IAsyncLifetime
{
    readonly HttpClient _http = new() { BaseAddress = new Uri(TestServers.RabbitMqManagement) };

    public string Name { get; } = $"dw-test-{Guid.NewGuid():N}";

    public RabbitMqTestVirtualHost()
    {
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue(
            "Basic", Convert.ToBase64String(
                Encoding.UTF8.GetBytes($"{TestServers.RabbitMqUser}:{TestServers.RabbitMqPassword}")));
    }

    /// <summary>The <c>RabbitMq:*</c> settings a host needs to join this virtual host.</summary>
    public IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Transport"] = "RabbitMq",
        ["RabbitMq:Host"] = TestServers.RabbitMqHost,
        ["RabbitMq:VirtualHost"] = Name,
        ["RabbitMq:Username"] = TestServers.RabbitMqUser,
        ["RabbitMq:Password"] = TestServers.RabbitMqPassword,
    };

    public async Task InitializeAsync()
    {
        var vhost = Uri.EscapeDataString(Name);
        (await _http.PutAsync($"/api/vhosts/{vhost}", null)).EnsureSuccessStatusCode();
        var permissions =
            new StringContent("""{"configure":".*","write":".*","read":".*"}""", Encoding.UTF8, "application/json");
        (await _http.PutAsync($"/api/permissions/{vhost}/{Uri.EscapeDataString(TestServers.RabbitMqUser)}",
            permissions)).EnsureSuccessStatusCode();
    }

    /// <summary>
    /// Messages ready plus unacknowledged in a queue (or the count named by <paramref name="field"/>, such as
    /// <c>messages_unacknowledged</c>), as the management API last sampled them.
    /// </summary>
    public async Task<long> QueueDepthAsync(string queue, string field = "messages")
    {
        using var response =
            await _http.GetAsync($"/api/queues/{Uri.EscapeDataString(Name)}/{Uri.EscapeDataString(queue)}");
        if (!response.IsSuccessStatusCode)
        {
            return 0;
        }

        using var json = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.TryGetProperty(field, out var messages)
            && messages.ValueKind == System.Text.Json.JsonValueKind.Number
            ? messages.GetInt64()
            : 0;
    }

    /// <summary>Every <c>_error</c> queue of the virtual host and its messages (ready plus unacknowledged), from the
    /// management API.</summary>
    public async Task<IReadOnlyDictionary<string, long>> ErrorQueuesAsync()
    {
        using var json = System.Text.Json.JsonDocument.Parse(
            await _http.GetStringAsync($"/api/queues/{Uri.EscapeDataString(Name)}?columns=name,messages"));
        return json.RootElement.EnumerateArray()
            .Select(q => (Name: q.GetProperty("name").GetString()!, Messages: q.TryGetProperty("messages",
                out var m) && m.ValueKind == System.Text.Json.JsonValueKind.Number ? m.GetInt64() : 0))
            .Where(q => q.Name.EndsWith("_error", StringComparison.Ordinal))
            .ToDictionary(q => q.Name, q => q.Messages);
    }

    /// <summary>The <c>_error</c> queues that hold a message.</summary>
    public async Task<IReadOnlyDictionary<string, long>> NonEmptyErrorQueuesAsync()
        => (await ErrorQueuesAsync()).Where(q => q.Value > 0).ToDictionary();

    /// <summary>Empties a queue (what a test left in an error queue on purpose must not count against the next
    /// test).</summary>
    public async Task PurgeAsync(string queue)
        => (await _http.DeleteAsync($"/api/queues/{Uri.EscapeDataString(Name)}/{Uri.EscapeDataString(queue)}/contents"))
            .EnsureSuccessStatusCode();

    public async Task<bool> ExchangeExistsAsync(string exchange)
    {
        using var response =
            await _http.GetAsync($"/api/exchanges/{Uri.EscapeDataString(Name)}/{Uri.EscapeDataString(exchange)}");
        return response.IsSuccessStatusCode;
    }

    /// <summary>Deletes the virtual host now, closing every connection to it, as a lost broker would.</summary>
    public async Task DropAsync()
        => (await _http.DeleteAsync($"/api/vhosts/{Uri.EscapeDataString(Name)}")).EnsureSuccessStatusCode();

    public async Task DisposeAsync()
    {
        await _http.DeleteAsync($"/api/vhosts/{Uri.EscapeDataString(Name)}");
        _http.Dispose();
    }
}

/// <summary>A PostgreSQL database of its own for one test class, dropped afterwards.</summary>
public sealed class PostgresTestDatabase : IAsyncLifetime
{
    readonly string _admin;

    public PostgresTestDatabase()
        : this(TestServers.PostgresAdmin)
    {
    }

    PostgresTestDatabase(string admin)
    {
        _admin = admin;
    }

    /// <summary>A database on another server than the shared one (the chaos run's private cluster), given its admin
    /// login.</summary>
    public static PostgresTestDatabase On(string admin) => new(admin);

    public string Name { get; } = $"dw_test_{Guid.NewGuid():N}";

    /// <summary>A modest pool per process: a test may run six services and itself against one server.</summary>
    public string ConnectionString
        => new NpgsqlConnectionStringBuilder(_admin) { Database = Name, MaxPoolSize = 20 }.ConnectionString;

    public IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Database:Provider"] = "Postgres",
        ["ConnectionStrings:Default"] = ConnectionString,
    };

    public async Task InitializeAsync()
    {
        await using var connection = new NpgsqlConnection(_admin);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{Name}\"", connection);
        await command.ExecuteNonQueryAsync();
    }

    public Task<long> ScalarAsync(string sql) => PostgresQueries.ScalarAsync(ConnectionString, sql);

    public Task<IReadOnlyList<string>> RowsAsync(string sql) => PostgresQueries.RowsAsync(ConnectionString, sql);

    public async Task DisposeAsync()
    {
        await PostgresDatabases.DropAsync(_admin, Name);
    }
}

/// <summary>A SQLite file of its own for one test class, deleted afterwards.</summary>
public sealed class SqliteTestDatabase : IDisposable
{
    readonly string _path = Path.Combine(Path.GetTempPath(), $"dw-test-{Guid.NewGuid():N}.db");

    public IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Database:Provider"] = "Sqlite",
        ["ConnectionStrings:Default"] = $"Data Source={_path}",
    };

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        foreach (var file in new[] { _path, _path + "-wal", _path + "-shm" })
        {
            File.Delete(file);
        }
    }
}

/// <summary>One-off queries a test asserts on: a number, or the first column of every row.</summary>
public static class PostgresQueries
{
    public static async Task<long> ScalarAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync());
    }

    public static async Task<IReadOnlyList<string>> RowsAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<string>();
        while (await reader.ReadAsync())
        {
            rows.Add(reader.IsDBNull(0) ? "" : reader.GetString(0));
        }

        return rows;
    }
}
