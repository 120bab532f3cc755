using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Configuration;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>Records every <c>LeaseGranted</c>/<c>LeaseRejected</c> the test's bus sees into the run's ledger.</summary>
public sealed class OutcomeRecorder(LeaseLedger ledger) : IConsumer<LeaseGranted>, IConsumer<LeaseRejected>
{
    public Task Consume(ConsumeContext<LeaseGranted> context)
    {
        ledger.Answered(context.Message);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<LeaseRejected> context)
    {
        ledger.Answered(context.Message);
        return Task.CompletedTask;
    }
}

/// <summary>
/// The whole service as separate OS processes (by default two LeaseSaga, two Provisioner, one Trust, one
/// Reaper) on one broker and one PostgreSQL database, plus the test's own bus that plays instances and
/// records every answer in a <see cref="LeaseLedger"/>. Shared by the lifecycle, hostile-input, overload and
/// chaos tests; services can be killed (<c>kill -9</c>) and started again.
/// </summary>
public sealed class LifecycleCluster : IAsyncDisposable
{
    public static readonly string[] AllServices =
        ["LeaseSaga", "LeaseSaga", "Provisioner", "Provisioner", "Trust", "Reaper"];

    readonly List<ServiceProcess> _services = [];
    readonly List<ServiceProcess> _stopped = [];
    readonly IReadOnlyDictionary<string, string?> _settings;
    readonly Func<int, IReadOnlyDictionary<string, string?>>? _perService;
    readonly Dictionary<ServiceProcess, IReadOnlyDictionary<string, string?>> _settingsOf = [];
    readonly string _connectionString;
    int _starts;
    IHost _client = null!;

    LifecycleCluster(IReadOnlyDictionary<string, string?> settings, string connectionString,
        Func<int, IReadOnlyDictionary<string, string?>>? perService)
    {
        _settings = settings;
        _connectionString = connectionString;
        _perService = perService;
    }

    public LeaseLedger Ledger { get; } = new();

    public IBus Bus => _client.Services.GetRequiredService<IBus>();

    /// <summary>The services running now (a killed one is replaced by its restart).</summary>
    public IReadOnlyList<ServiceProcess> Services { get { lock (_services) { return _services.ToList(); } } }

    /// <summary>
    /// Starts the services and the test's bus. <paramref name="settings"/> holds every setting, broker and database
    /// included. The cloud services go first, so their queues are bound before the first LeaseSaga fills the hot
    /// pool (a command published to an exchange with no queue bound yet is dropped by the broker: on a fresh
    /// broker the first ProvisionWorkers would only be recovered by the provisioning timeout); then one LeaseSaga
    /// alone, since it migrates the database; then the other LeaseSagas. <paramref name="perService"/> overrides
    /// settings per start, by its number in start order (0, 1, …; the test's own bus is -1), e.g. a broker node each.
    /// </summary>
    public static async Task<LifecycleCluster> StartAsync(
        IReadOnlyDictionary<string, string?> settings, string connectionString, IReadOnlyList<string>? services = null,
        Func<int, IReadOnlyDictionary<string, string?>>? perService = null)
    {
        var cluster = new LifecycleCluster(settings, connectionString, perService);
        services ??= AllServices;
        var sagas = services.Where(s => s == "LeaseSaga").ToList();
        await Task.WhenAll(services.Where(s => s != "LeaseSaga").Select(cluster.StartAsync));
        await cluster.StartAsync(sagas[0]);
        await Task.WhenAll(sagas.Skip(1).Select(cluster.StartAsync));
        cluster._client = await TestBus.StartAsync(
            cluster.SettingsFor(-1)
                .Where(s => s.Key.StartsWith("RabbitMq:", StringComparison.Ordinal) || s.Key == "Transport"),
            bus => bus.AddConsumer<OutcomeRecorder>(),
            (s, _) => s.AddSingleton(cluster.Ledger));
        return cluster;
    }

    IReadOnlyDictionary<string, string?> SettingsFor(int start)
        => _perService is null ? _settings
            : _settings.Concat(_perService(start)).GroupBy(s => s.Key).ToDictionary(g => g.Key, g => g.Last().Value);

    public async Task<ServiceProcess> StartAsync(string project)
    {
        var settings = SettingsFor(Interlocked.Increment(ref _starts) - 1);
        var service = ServiceProcess.Start(project, settings);
        lock (_services)
        {
            _services.Add(service);
            _settingsOf[service] = settings;
        }

        await service.WaitUntilStartedAsync(TimeSpan.FromSeconds(90));
        return service;
    }

    /// <summary>kill -9 the service and start the same project again at once; returns the new process (still
    /// starting).</summary>
    public ServiceProcess KillAndStart(ServiceProcess service)
    {
        service.KillHard();
        IReadOnlyDictionary<string, string?> settings;
        lock (_services)
        {
            settings = _settingsOf.GetValueOrDefault(service) ?? _settings;
        }

        var restarted = ServiceProcess.Start(service.Project, settings);
        lock (_services)
        {
            _services.Remove(service);
            _stopped.Add(service);
            _services.Add(restarted);
            _settingsOf[restarted] = settings;
        }

        return restarted;
    }

    /// <summary>The processes killed so far (their output stays readable).</summary>
    public IReadOnlyList<ServiceProcess> Stopped { get { lock (_services) { return _stopped.ToList(); } } }

    /// <summary>
    /// One instance playing leases one after another: publishes each request (twice when <paramref name="twice"/>
    /// says so), waits for its outcome, holds a granted worker for a moment and releases it.
    /// </summary>
    public async Task PlayInstanceAsync(string instance, string pool, int leases, Func<int, bool> twice,
        TimeSpan outcomeDeadline, int seed)
    {
        var random = new Random(seed);
        for (var n = 0; n < leases; n++)
        {
            var request = new LeaseRequested(NewId.NextGuid(), instance, ThumbprintOf(instance), pool, $"task-{n}",
                DateTimeOffset.UtcNow);
            Ledger.Requested(request);
            await PublishWithRetryAsync(request);
            if (twice(n))
            {
                await PublishWithRetryAsync(request);
            }

            await Eventually.True(() => Ledger.OutcomesOf(request.LeaseId).Count > 0, outcomeDeadline,
                $"an outcome for {instance}'s lease {n}", Diagnostics);
            if (Ledger.OutcomesOf(request.LeaseId)[0] is LeaseGranted)
            {
                await Task.Delay(random.Next(0, 150)); // the task runs
                Ledger.Released(request.LeaseId);
                await PublishWithRetryAsync(new LeaseReleased(request.LeaseId, instance));
            }
        }
    }

    /// <summary>A publish during a broker restart fails; an instance tries again, as a real one would.</summary>
    public async Task PublishWithRetryAsync<T>(T message)
        where T : class
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await Bus.Publish(message, timeout.Token);
                return;
            }
            catch (Exception) when (attempt < 30)
            {
                await Task.Delay(TimeSpan.FromSeconds(1));
            }
        }
    }

    public static string ThumbprintOf(string instance)
        => Convert.ToHexString(
            System.Security.Cryptography.SHA1.HashData(System.Text.Encoding.UTF8.GetBytes(instance)));

    /// <summary>Every VM the simulated cloud created, whether it is deleted, and every trust command it
    /// received.</summary>
    public Task<IReadOnlyList<CloudRecord>> CloudAsync() => ServiceRecords.ReadSimulatedCloudAsync(_connectionString);

    /// <summary>The service's own lease and worker rows (and, when given, the consumers seen on its queues).</summary>
    public Task<ServiceRecord> ServiceAsync(IReadOnlyDictionary<string, uint>? consumersByQueue = null)
        => ServiceRecords.ReadAsync(_connectionString, consumersByQueue);

    public Task<long> ScalarAsync(string sql) => PostgresQueries.ScalarAsync(_connectionString, sql);

    public Task<IReadOnlyList<string>> RowsAsync(string sql) => PostgresQueries.RowsAsync(_connectionString, sql);

    /// <summary>What a failed wait prints: unanswered leases, live saga rows, the services' errors.</summary>
    public string Diagnostics()
    {
        var unanswered = Ledger.Requests.Select(r => r.LeaseId).Distinct().Where(id => Ledger.OutcomesOf(id).Count == 0)
            .Take(50).ToList();
        IReadOnlyList<string> rows;
        try
        {
            rows = RowsAsync(
                "SELECT 'lease ' || \"CorrelationId\" || ' ' || \"CurrentState\" || ' worker ' "
                    + "|| coalesce(\"WorkerId\"::text, '-') FROM leases WHERE \"CurrentState\" NOT IN ('Released', "
                    + "'Rejected', 'Revoked') "
                + "UNION ALL SELECT 'worker ' || \"CorrelationId\" || ' ' || \"CurrentState\" || ' ' || "
                + "coalesce(\"TrustedInstanceId\", '-') || ' lease ' || coalesce(\"CurrentLeaseId\"::text, '-') FROM "
                + "workers "
                + "UNION ALL SELECT 'pool ' || \"Name\" || ' hot ' || \"HotTarget\" || ' max ' || \"MaxWorkers\" || ' "
                + "failures ' || \"ConsecutiveFailures\" FROM pools").GetAwaiter().GetResult();
        }
        catch (Exception e)
        {
            rows = [$"(database not readable: {e.Message})"];
        }

        List<ServiceProcess> all;
        lock (_services)
        {
            all = [.. _services, .. _stopped];
        }

        var errors = all.SelectMany(s => s.Output.Split('\n'))
            .Where(l => l.Contains("fail:") || l.Contains("Exception:")).Distinct().Take(20);
        return $"{Ledger.Outcomes.Count} outcomes for {Ledger.Requests.Count} requests; unanswered: "
            + $"{string.Join(", ", unanswered)}\n"
               + string.Join("\n", rows.Take(200)) + "\n" + string.Join("\n", errors);
    }

    public async ValueTask DisposeAsync()
    {
        if (_client is not null)
        {
            await _client.StopAsync();
            _client.Dispose();
        }

        // Every service's output stays behind for whoever investigates a failure.
        var logs = Path.Combine(ServiceProcess.RepositoryRoot, "artifacts", "service-logs");
        Directory.CreateDirectory(logs);
        foreach (var service in Services.Concat(Stopped))
        {
            var name = $"{DateTime.UtcNow:HHmmss}-{service.Project}-{service.Id}.log";
            await service.DisposeAsync();
            await File.WriteAllTextAsync(Path.Combine(logs, name), service.Output);
        }
    }
}
