using System.Diagnostics;
using System.Text;
using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Npgsql;
using Xunit.Abstractions;

namespace DynamicWorkers.IntegrationTests.Lifecycle;

/// <summary>
/// Allocation scaled out: three LeaseSaga copies deciding in parallel and two of each consumer (Provisioner, Trust,
/// Reaper: two sweeps overlap safely, since a sweep re-delivers a timer only with its token and deletes VMs
/// idempotently), as processes on the real broker and database. Fifty instances ask for 500 leases of one small pool,
/// each holding several at once and publishing every request twice, so most leases queue for the pool's few workers.
/// Checks: one outcome per lease (a repeat gets the same one), every <see cref="InvariantChecker"/> invariant, no VM
/// left once drained, the pool's live workers, sampled from the database all along, never above <c>MaxWorkers</c>,
/// and leases that did not re-use their instance's idle worker granted in the order the service received them. The
/// figures, and every such lease with when it entered the pool's line, go to the test output and
/// <c>artifacts/scale-out-report.txt</c>.
/// </summary>
public sealed class ScaleOutAllocationTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database,
    ITestOutputHelper output)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    const int MaxWorkers = 8;
    const int HotTarget = 2;
    const int Instances = 50;
    const int LeasesPerInstance = 10;
    const int LeasesHeldAtOnce = 3;

    /// <summary>Long enough that no lease of a healthy run waits it out: every lease must be granted.</summary>
    static readonly TimeSpan AllocationTimeout = TimeSpan.FromMinutes(5);

    static readonly TimeSpan SampleEvery = TimeSpan.FromMilliseconds(250);

    /// <summary>Grants this close together count as one instant: the last steps to each (trust, the grant) run in
    /// different processes.</summary>
    static readonly TimeSpan SameInstant = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Leases received this close together count as arriving together: a LeaseSaga process handles up to 32 requests at
    /// once, so such leases reach the pool in no set order (one LeaseSaga alone puts them in line up to 0.3 s out of
    /// order).
    /// </summary>
    static readonly TimeSpan SameArrival = TimeSpan.FromSeconds(1);

    static readonly string[] Services =
        ["LeaseSaga", "LeaseSaga", "LeaseSaga", "Provisioner", "Provisioner", "Trust", "Trust", "Reaper", "Reaper"];

    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = $"{HotTarget}",
        [$"Pools:{Pool}:MaxWorkers"] = $"{MaxWorkers}",
        [$"Pools:{Pool}:AllocationTimeout"] = AllocationTimeout.ToString(),
        ["Pools:windows-2022:HotTarget"] = "0",
        // An idle worker serves only its own instance: a short idle timeout frees its place for the line.
        ["Lifecycle:IdleTimeout"] = "00:00:01",
        ["Lifecycle:MaxWorkerAge"] = "01:00:00",
        ["Lifecycle:MaxLeaseDuration"] = "00:10:00",
        ["Lifecycle:ProvisioningTimeout"] = "00:00:30",
        ["Lifecycle:TrustTimeout"] = "00:00:15",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        // Both Reapers sweep several times during the run.
        ["Reaper:SweepInterval"] = "00:00:05",
        ["Reaper:OverdueGrace"] = "00:00:10",
        ["Reaper:OrphanGrace"] = "00:00:30",
        ["Cloud:Provider"] = "Simulated",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.500",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.100",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.100",
        ["Logging:Console:FormatterOptions:TimestampFormat"] = "HH:mm:ss.fff ",
    }).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString, Services);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Five_hundred_leases_on_three_lease_sagas_stay_within_max_workers_and_are_granted_in_arrival_order()
    {
        var clock = Stopwatch.StartNew();
        var ledger = _cluster.Ledger;

        // From the first request until the pool is drained: the live workers, and when each lease first stood in the
        // pool's line.
        using var stopSampling = new CancellationTokenSource();
        var samples = new List<LiveSample>();
        var enteredLine = new Dictionary<Guid, (DateTimeOffset At, int Position)>();
        var sampler = Task.Run(async () =>
        {
            while (!stopSampling.IsCancellationRequested)
            {
                var (sample, line) = await SampleAsync(clock.Elapsed);
                samples.Add(sample);
                for (var i = 0; i < line.Count; i++)
                {
                    enteredLine.TryAdd(line[i], (sample.TakenAt, i + 1));
                }

                try
                {
                    await Task.Delay(SampleEvery, stopSampling.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        });

        TimeSpan loadTime, drainTime;
        try
        {
            await Task.WhenAll(Enumerable.Range(0, Instances).Select(i => PlayInstanceAsync($"scale-{i:00}", seed: i)));
            loadTime = clock.Elapsed;

            // Drain the hot pool too: then every worker must go and every VM the cloud created must be deleted.
            await _cluster.Bus.Publish(new SetPoolSize(Pool, 0, MaxWorkers));
            await Eventually.True(
                async () => await _cluster.ScalarAsync("SELECT count(*) FROM workers") == 0
                    && (await _cluster.CloudAsync()).All(v => v.Deleted),
                TimeSpan.FromSeconds(60),
                "every worker gone and every VM deleted after the idle timeout",
                _cluster.Diagnostics);
            drainTime = clock.Elapsed;
        }
        finally
        {
            await stopSampling.CancelAsync();
        }

        await sampler;

        var requested = ledger.Requests.Select(r => r.LeaseId).Distinct().ToList();
        var outcomes = requested.ToDictionary(id => id, ledger.OutcomesOf);
        var grants = outcomes.Values.Select(o => o.FirstOrDefault()).OfType<LeaseGranted>().ToList();
        var rejections = outcomes.Values.SelectMany(o => o).OfType<LeaseRejected>().ToList();
        var cloud = await _cluster.CloudAsync();
        var violations = InvariantChecker.Check(ledger, cloud, await _cluster.ServiceAsync(), expectAllDeleted: true);
        var sampledFor = samples.Count > 1 ? samples[^1].At - samples[0].At : TimeSpan.Zero;
        var widestGap = samples.Zip(samples.Skip(1), (a, b) => b.At - a.At).DefaultIfEmpty().Max();
        var maxLive = samples.Max(s => s.Live);

        // A lease that re-used its instance's idle worker may pass the line (that worker serves no one else); the
        // others are served first come, first served.
        var arrivals = await ArrivalsAsync(grants.Where(g => !g.Reused).ToList(), enteredLine);
        var overtaken = OvertakenLeases(arrivals);

        var report = new StringBuilder();
        report.AppendLine($"scale-out run: {Instances} instances x {LeasesPerInstance} leases, {LeasesHeldAtOnce} held "
            + $"at once by each, every request published twice; "
                          + $"pool MaxWorkers {MaxWorkers}, HotTarget {HotTarget}; "
                          + $"{string.Join(", ", Services.GroupBy(s => s).Select(g => $"{g.Count()} {g.Key}"))}");
        report.AppendLine($"load {loadTime.TotalSeconds:0.0} s, drained at {drainTime.TotalSeconds:0.0} s");
        report.AppendLine($"leases: {requested.Count} requested, {grants.Count} granted ({grants.Count(g => g.Reused)} "
            + $"re-used an idle worker), {rejections.Count} rejections, "
                          + $"{outcomes.Values.Count(o => o.Count == 0)} unanswered, "
                          + $"{outcomes.Values.Count(o => o.Count > 1)} answered twice");
        report.AppendLine($"VMs: {cloud.Count} created, {cloud.Count(v => v.Deleted)} deleted");
        report.AppendLine($"live workers: {samples.Count} samples over {sampledFor.TotalSeconds:0.0} s (widest gap "
            + $"{widestGap.TotalMilliseconds:0} ms); at most {maxLive} "
                          + $"(rows not reaping), {samples.Max(s => s.Rows)} worker rows with those reaping, "
                          + $"{samples.Max(s => s.Vms)} VMs not deleted; "
                          + $"longest line {samples.Max(s => s.Waiting)}");
        report.AppendLine($"arrival order: {arrivals.Count} leases granted without re-use; {overtaken.Count} of them "
            + $"overtaken by a lease received more than "
                          + $"{SameArrival.TotalSeconds:0.#} s later and granted more than "
                          + $"{SameInstant.TotalMilliseconds:0} ms earlier");
        foreach (var (lease, by) in overtaken.Take(20))
        {
            var first = by.MinBy(b => b.GrantedAt)!;
            report.AppendLine($"  {lease} overtaken by {by.Count} lease(s) received up to "
                + $"{(by.Max(b => b.ReceivedAt) - lease.ReceivedAt).TotalSeconds:0.0} s later, "
                              + $"granted up to {(lease.GrantedAt - first.GrantedAt).TotalSeconds:0.0} s earlier, e.g. "
                              + $"{first}");
        }

        report.AppendLine($"invariant violations: {violations.Count}");
        foreach (var violation in violations.Take(20))
        {
            report.AppendLine("  " + violation);
        }

        report.AppendLine("leases granted without re-use, by arrival:");
        foreach (var lease in arrivals.OrderBy(a => a.ReceivedAt))
        {
            report.AppendLine($"  {lease}");
        }

        output.WriteLine(report.ToString());
        Directory.CreateDirectory(Path.Combine(ServiceProcess.RepositoryRoot, "artifacts"));
        await File.WriteAllTextAsync(Path.Combine(ServiceProcess.RepositoryRoot, "artifacts", "scale-out-report.txt"),
            report.ToString());

        // Every lease answered by a grant (nothing waits out a timeout this long), a repeat with the same answer.
        Assert.True(grants.Count == Instances * LeasesPerInstance && rejections.Count == 0, report.ToString());
        Assert.True(outcomes.Values.All(o => o.Distinct().Count() == 1), report.ToString());
        Assert.True(violations.Count == 0, report.ToString());

        // Sampled all along (on average at least once a second: on a loaded machine one gap may last seconds) while
        // leases had to wait, and never above the maximum. A worker being reaped no longer counts: the pool lets it go
        // when the delete starts.
        Assert.True(samples.Count >= sampledFor.TotalSeconds, report.ToString());
        Assert.True(samples.Max(s => s.Waiting) > MaxWorkers, report.ToString());
        Assert.True(maxLive <= MaxWorkers, report.ToString());

        Assert.True(overtaken.Count == 0, report.ToString());
    }

    /// <summary>
    /// One instance: <see cref="LeasesHeldAtOnce"/> leases in flight at a time until all of its leases are done, each
    /// request published twice (same <c>LeaseId</c>), each grant held for a moment and released.
    /// </summary>
    async Task PlayInstanceAsync(string instance, int seed)
    {
        var random = new Random(seed);
        var next = 0;
        await Task.WhenAll(Enumerable.Range(0, LeasesHeldAtOnce).Select(async _ =>
        {
            for (var n = Interlocked.Increment(ref next); n <= LeasesPerInstance; n = Interlocked.Increment(ref next))
            {
                var request = new LeaseRequested(NewId.NextGuid(), instance, LifecycleCluster.ThumbprintOf(instance),
                    Pool, $"task-{n}", DateTimeOffset.UtcNow);
                _cluster.Ledger.Requested(request);
                await _cluster.PublishWithRetryAsync(request);
                await _cluster.PublishWithRetryAsync(request);
                await Eventually.True(() => _cluster.Ledger.OutcomesOf(request.LeaseId).Count > 0,
                    AllocationTimeout + TimeSpan.FromSeconds(30),
                    $"an outcome for {instance}'s lease {n}", _cluster.Diagnostics);
                if (_cluster.Ledger.OutcomesOf(request.LeaseId)[0] is LeaseGranted)
                {
                    int hold;
                    lock (random)
                    {
                        hold = random.Next(10, 50);
                    }

                    await Task.Delay(hold); // the task runs
                    _cluster.Ledger.Released(request.LeaseId);
                    await _cluster.PublishWithRetryAsync(new LeaseReleased(request.LeaseId, instance));
                }
            }
        }));
    }

    /// <summary>
    /// The pool's workers now (rows not reaping, all rows, the cloud's VMs not deleted), and the leases in its line in
    /// their order there (leases waiting with no worker, by arrival).
    /// </summary>
    async Task<(LiveSample Sample, IReadOnlyList<Guid> Line)> SampleAsync(TimeSpan at)
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using var count = new NpgsqlCommand(
            $"""
             SELECT (SELECT count(*) FROM workers WHERE "Pool" = '{Pool}' AND "CurrentState" <> 'Reaping'),
                    (SELECT count(*) FROM workers WHERE "Pool" = '{Pool}'),
                    (SELECT count(*) FROM simulated_vms WHERE "Pool" = '{Pool}' AND "DeletedAt" IS NULL)
             """,
            connection);
        long live, rows, vms;
        try
        {
            await using var reader = await count.ExecuteReaderAsync();
            await reader.ReadAsync();
            (live, rows, vms) = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            // The simulated cloud makes its table when it first starts.
            (live, rows, vms) = (0, 0, 0);
        }

        var takenAt = DateTimeOffset.UtcNow;
        await using var waiting = new NpgsqlCommand(
            $"""SELECT "CorrelationId" FROM leases WHERE "Pool" = '{Pool}' AND "CurrentState" IN ('Allocating', 'WaitingForWorker') AND "WorkerId" IS NULL ORDER BY "ReceivedAt" """,
            connection);
        var line = new List<Guid>();
        await using (var reader = await waiting.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                line.Add(reader.GetGuid(0));
            }
        }

        return (new LiveSample(at, takenAt, live, rows, vms, line.Count), line);
    }

    /// <summary>Each granted lease with when the service received it (the lease row's <c>ReceivedAt</c>) and when it
    /// first stood in the pool's line.</summary>
    async Task<IReadOnlyList<ArrivedLease>> ArrivalsAsync(IReadOnlyList<LeaseGranted> grants,
        IReadOnlyDictionary<Guid, (DateTimeOffset At, int Position)> enteredLine)
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("""SELECT "CorrelationId", "ReceivedAt" FROM leases""", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var receivedAt = new Dictionary<Guid, DateTimeOffset>();
        while (await reader.ReadAsync())
        {
            receivedAt[reader.GetGuid(0)] = reader.GetFieldValue<DateTimeOffset>(1);
        }

        return grants.Select(g => new ArrivedLease(
            g.LeaseId, g.InstanceId, g.WorkerId, receivedAt[g.LeaseId], g.GrantedAt,
            enteredLine.TryGetValue(g.LeaseId, out var line) ? line : null)).ToList();
    }

    /// <summary>
    /// Grants must follow arrival: each lease with the leases received more than <see cref="SameArrival"/> after it
    /// that were granted more than <see cref="SameInstant"/> before it.
    /// </summary>
    static List<(ArrivedLease Lease, List<ArrivedLease> By)> OvertakenLeases(IReadOnlyList<ArrivedLease> leases)
        => leases
            .OrderBy(l => l.ReceivedAt)
            .Select(lease => (Lease: lease, By: leases.Where(later => later.ReceivedAt > lease.ReceivedAt + SameArrival
                && later.GrantedAt < lease.GrantedAt - SameInstant).ToList()))
            .Where(o => o.By.Count > 0)
            .ToList();

    sealed record LiveSample(TimeSpan At, DateTimeOffset TakenAt, long Live, long Rows, long Vms, int Waiting);

    sealed record ArrivedLease(Guid LeaseId, string InstanceId, Guid WorkerId, DateTimeOffset ReceivedAt,
        DateTimeOffset GrantedAt, (DateTimeOffset At, int Position)? EnteredLine)
    {
        public override string ToString()
            => $"lease {LeaseId} of {InstanceId}: received {ReceivedAt:HH:mm:ss.fff}, "
               + (EnteredLine is { } line
                   ? $"in line by {line.At:HH:mm:ss.fff} (#{line.Position}), " : "never seen in line, ")
               + $"granted {GrantedAt:HH:mm:ss.fff} worker {WorkerId}";
    }
}
