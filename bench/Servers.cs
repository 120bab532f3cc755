using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Testing;
using Npgsql;

namespace DynamicWorkers.Bench;

/// <summary>Where the servers are: the same environment variables and defaults as the tests
/// (<c>scripts/test.sh</c>).</summary>
public static class BenchServers
{
    public static string RabbitMqHost => Env("DW_TEST_RABBITMQ_HOST", "127.0.0.1");
    public static string RabbitMqUser => Env("DW_TEST_RABBITMQ_USER", "dw");
    public static string RabbitMqPassword => Env("DW_TEST_RABBITMQ_PASSWORD", "dw");
    public static string RabbitMqManagement => Env("DW_TEST_RABBITMQ_MANAGEMENT", "http://127.0.0.1:15672");
    public static string PostgresAdmin => Env("DW_TEST_POSTGRES",
        "Host=127.0.0.1;Port=5432;Username=dw;Password=dw;Database=postgres;SSL Mode=Disable");

    static string Env(string name, string fallback)
        => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback;
}

/// <summary>A RabbitMQ virtual host of the run's own, deleted at the end: the run never touches anyone else's
/// queues.</summary>
public sealed class BenchVirtualHost : IAsyncDisposable
{
    readonly HttpClient _http = new()
    {
        BaseAddress = new Uri(BenchServers.RabbitMqManagement),
        Timeout = TimeSpan.FromSeconds(30),
    };

    public string Name { get; } = $"dw-bench-{Guid.NewGuid():N}";

    BenchVirtualHost()
    {
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue(
            "Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(
                $"{BenchServers.RabbitMqUser}:{BenchServers.RabbitMqPassword}")));
    }

    public static async Task<BenchVirtualHost> CreateAsync()
    {
        var vhost = new BenchVirtualHost();
        var name = Uri.EscapeDataString(vhost.Name);
        (await vhost._http.PutAsync($"/api/vhosts/{name}", null)).EnsureSuccessStatusCode();
        var permissions = new StringContent("""{"configure":".*","write":".*","read":".*"}""", Encoding.UTF8,
            "application/json");
        (await vhost._http.PutAsync($"/api/permissions/{name}/{Uri.EscapeDataString(BenchServers.RabbitMqUser)}",
            permissions)).EnsureSuccessStatusCode();
        return vhost;
    }

    public IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Transport"] = "RabbitMq",
        ["RabbitMq:Host"] = BenchServers.RabbitMqHost,
        ["RabbitMq:VirtualHost"] = Name,
        ["RabbitMq:Username"] = BenchServers.RabbitMqUser,
        ["RabbitMq:Password"] = BenchServers.RabbitMqPassword,
    };

    public async Task<string> BrokerVersionAsync()
    {
        using var json = JsonDocument.Parse(await _http.GetStringAsync("/api/overview"));
        return json.RootElement.TryGetProperty("rabbitmq_version", out var v) ? v.GetString() ?? "?" : "?";
    }

    /// <summary>
    /// Every queue of the vhost with its depth (ready + unacknowledged), as the management API last sampled it; of the
    /// scheduler's queue only the ready ones: its unacknowledged messages are mostly schedules held for their cancel
    /// (up to
    /// <c>Scheduler:HoldLimit</c>, 30 s), waiting by design, not work to wait for.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, long>> QueueDepthsAsync()
    {
        using var json = JsonDocument.Parse(await _http.GetStringAsync(
            $"/api/queues/{Uri.EscapeDataString(Name)}?columns=name,messages,messages_ready"));
        var schedulerQueue = new SchedulerOptions().QueueName;
        var depths = new Dictionary<string, long>();
        foreach (var queue in json.RootElement.EnumerateArray())
        {
            var name = queue.GetProperty("name").GetString()!;
            depths[name] = queue.TryGetProperty(name == schedulerQueue ? "messages_ready" : "messages", out var m)
                && m.ValueKind == JsonValueKind.Number ? m.GetInt64() : 0;
        }

        return depths;
    }

    /// <summary>Messages delivered to consumers in this vhost so far (the management API's statistics lag by a few
    /// seconds).</summary>
    public async Task<long> DeliveredAsync()
    {
        using var json = JsonDocument.Parse(await _http.GetStringAsync($"/api/vhosts/{Uri.EscapeDataString(Name)}"));
        return json.RootElement.TryGetProperty("message_stats", out var stats)
               && stats.TryGetProperty("deliver_get", out var delivered) && delivered.ValueKind == JsonValueKind.Number
            ? delivered.GetInt64()
            : 0;
    }

    /// <summary>Messages delivered so far per queue: where the messages of a lifecycle go.</summary>
    public async Task<IReadOnlyDictionary<string, long>> DeliveredByQueueAsync()
    {
        using var json = JsonDocument.Parse(await _http.GetStringAsync(
            $"/api/queues/{Uri.EscapeDataString(Name)}?columns=name,message_stats"));
        var delivered = new Dictionary<string, long>();
        foreach (var queue in json.RootElement.EnumerateArray())
        {
            delivered[queue.GetProperty("name").GetString()!] =
                queue.TryGetProperty("message_stats", out var stats) && stats.ValueKind == JsonValueKind.Object
                && stats.TryGetProperty("deliver_get", out var d) && d.ValueKind == JsonValueKind.Number
                    ? d.GetInt64()
                    : 0;
        }

        return delivered;
    }

    /// <summary>
    /// What each <c>_error</c> queue holds, a few messages each (left in place): the message type and MassTransit's
    /// fault headers, so that a run with errors says which.
    /// </summary>
    public async Task<IReadOnlyList<string>> ErrorSamplesAsync(int perQueue = 3)
    {
        var samples = new List<string>();
        foreach (var (queue, depth) in await QueueDepthsAsync())
        {
            if (depth == 0 || !queue.EndsWith("_error", StringComparison.Ordinal))
            {
                continue;
            }

            var request = new StringContent(
                $$"""{"count":{{perQueue}},"ackmode":"ack_requeue_true","encoding":"auto","truncate":4000}""",
                Encoding.UTF8, "application/json");
            var response = await _http.PostAsync(
                $"/api/queues/{Uri.EscapeDataString(Name)}/{Uri.EscapeDataString(queue)}/get", request);
            using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            foreach (var message in json.RootElement.EnumerateArray())
            {
                var headers = message.GetProperty("properties").TryGetProperty("headers", out var h) ? h : default;
                string Header(string name) => headers.ValueKind == JsonValueKind.Object
                    && headers.TryGetProperty(name, out var v) ? v.ToString() : "?";
                var payload = message.TryGetProperty("payload", out var p) ? p.GetString() ?? "" : "";
                var type = Regex.Match(payload, "\"(urn:message:[^\"]+)\"") is { Success: true } m
                    ? m.Groups[1].Value : "?";
                samples.Add($"{queue}: {type}: {Header("MT-Fault-ExceptionType")}: {Header("MT-Fault-Message")}");
            }
        }

        return samples;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _http.DeleteAsync($"/api/vhosts/{Uri.EscapeDataString(Name)}");
        }
        finally
        {
            _http.Dispose();
        }
    }
}

/// <summary>A PostgreSQL database of the run's own, dropped at the end.</summary>
public sealed class BenchDatabase : IAsyncDisposable
{
    public string Name { get; } = $"dw_bench_{Guid.NewGuid():N}";

    BenchDatabase()
    {
    }

    public static async Task<BenchDatabase> CreateAsync()
    {
        var database = new BenchDatabase();
        await using var connection = new NpgsqlConnection(BenchServers.PostgresAdmin);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{database.Name}\"", connection);
        await command.ExecuteNonQueryAsync();
        return database;
    }

    public string ConnectionString(int maxPoolSize)
        => new NpgsqlConnectionStringBuilder(BenchServers.PostgresAdmin)
        {
            Database = Name,
            MaxPoolSize = maxPoolSize,
        }.ConnectionString;

    public async Task<string> ScalarAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(ConnectionString(2));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToString(await command.ExecuteScalarAsync()) ?? "";
    }

    /// <summary>Rows inserted, updated and deleted so far per table (PostgreSQL's statistics, flushed within a second
    /// or so).</summary>
    public async Task<IReadOnlyDictionary<string, long>> RowWritesByTableAsync()
    {
        await using var connection = new NpgsqlConnection(ConnectionString(2));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM "
            + "pg_stat_user_tables", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var writes = new Dictionary<string, long>();
        while (await reader.ReadAsync())
        {
            writes[reader.GetString(0)] = reader.GetInt64(1);
        }

        return writes;
    }

    /// <summary>Transactions committed in this database so far, by every client (PostgreSQL's statistics, see
    /// <see cref="RowWritesByTableAsync"/>).</summary>
    public async Task<long> CommitsAsync()
        => long.Parse(await ScalarAsync("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"));

    /// <summary>
    /// The server's next transaction id. Only a transaction that writes is given one (this query included), so the
    /// difference of two readings, less one, counts the writing transactions between them on the whole server.
    /// </summary>
    public async Task<long> TransactionIdAsync()
        => long.Parse(await ScalarAsync("SELECT pg_current_xact_id()::text"));

    public async ValueTask DisposeAsync()
    {
        await PostgresDatabases.DropAsync(BenchServers.PostgresAdmin, Name);
    }
}
