using System.Diagnostics;
using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Xunit.Abstractions;

namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>
/// A flood against a pool already at its maximum (every worker idle for its own instance): every request ends in a
/// grant (an instance's idle worker serves its next lease, released at once, or an idle worker of another instance is
/// retired to make room) or a <c>NoCapacity</c> rejection, while the LeaseSaga process's memory stays bounded. Two
/// floods: the first meets services that have just started, the second warm services, which answer within the
/// allocation timeout (plus the time its timers take to be delivered).
/// <c>DW_FLOOD_REQUESTS</c> sets the size of each (default 1,000 here; <c>scripts/chaos.sh</c> runs 5,000). Figures go
/// to the test output and <c>artifacts/flood-report.txt</c>.
/// </summary>
public sealed class OverloadTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database,
    ITestOutputHelper output)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    const int MaxWorkers = 5;
    static readonly TimeSpan AllocationTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Any flood, even on services that just started, is answered within the allocation timeout plus
    /// this.</summary>
    static readonly TimeSpan QueueMargin = TimeSpan.FromSeconds(90);

    /// <summary>
    /// Warm services answer within the allocation timeout plus this: the time a lease that waited its whole timeout
    /// needs for its timer to be stored, fire and be answered, with a thousand others falling due in the same second.
    /// </summary>
    static readonly TimeSpan DeliveryMargin = TimeSpan.FromSeconds(10);

    /// <summary>The LeaseSaga process may grow to this (resident), never beyond, however many leases wait.</summary>
    const long MemoryLimitBytes = 1024L * 1024 * 1024;

    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = $"{MaxWorkers}",
        [$"Pools:{Pool}:MaxWorkers"] = $"{MaxWorkers}",
        [$"Pools:{Pool}:AllocationTimeout"] = AllocationTimeout.ToString(),
        // The per-instance caps out of the way: this flood tests the pool's own bounds (FairShareTests tests the caps).
        [$"Pools:{Pool}:MaxLeasesPerInstance"] = "1000",
        [$"Pools:{Pool}:MaxWaitingPerInstance"] = "1000",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:IdleTimeout"] = "00:05:00",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:02",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.200",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.050",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.050",
    }).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString,
            ["LeaseSaga", "Provisioner", "Trust"]);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task A_flood_against_a_full_pool_ends_in_grants_or_NoCapacity_within_the_allocation_timeout_with_memory_bounded()
    {
        var requests = int.TryParse(Environment.GetEnvironmentVariable("DW_FLOOD_REQUESTS"), out var n) && n > 0
            ? n : 1000;
        var ledger = _cluster.Ledger;
        var leaseSaga = _cluster.Services.Single(s => s.Project == "LeaseSaga");
        // Half the flood comes from the instances whose idle workers fill the pool, half from instances with none.
        var instances = Enumerable.Range(0, 2 * MaxWorkers).Select(i => $"flood-{i}").ToList();

        // Fill the pool: one lease per owner instance, MaxWorkers in all, then released: the pool stays at its
        // maximum with every worker idle for its own instance (an idle worker of one instance never serves another).
        var holders = new List<LeaseRequested>();
        foreach (var instance in instances.Take(MaxWorkers))
        {
            var hold = new LeaseRequested(NewId.NextGuid(), instance, LifecycleCluster.ThumbprintOf(instance), Pool,
                "hold", DateTimeOffset.UtcNow);
            holders.Add(hold);
            ledger.Requested(hold);
            await _cluster.Bus.Publish(hold);
        }

        await Eventually.True(() => holders.All(h => ledger.OutcomesOf(h.LeaseId).FirstOrDefault() is LeaseGranted),
            TimeSpan.FromSeconds(60), "the pool full", _cluster.Diagnostics);
        var released = new HashSet<Guid>();
        async Task ReleaseNewGrantsAsync()
        {
            foreach (var grant in ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseGranted>()
                .Where(g => released.Add(g.LeaseId)).ToList())
            {
                ledger.Released(grant.LeaseId);
                await _cluster.Bus.Publish(new LeaseReleased(grant.LeaseId, grant.InstanceId));
            }
        }

        await ReleaseNewGrantsAsync();
        await Eventually.True(async () => await _cluster.ScalarAsync(
            "SELECT count(*) FROM workers WHERE \"CurrentState\" = 'Idle'") == MaxWorkers,
            TimeSpan.FromSeconds(60), "every worker idle", _cluster.Diagnostics);

        // The flood, twice. The first meets services that have just started: their code is still being compiled (the
        // JIT's tiers) while it runs, which costs LeaseSaga about twice the CPU per message. The second meets them
        // warm, as a running deployment is, and must be answered within the allocation timeout (plus the margin its
        // timers need to be delivered). Both are reported; the first is held only to the wider bound.
        var cold = await FloodAsync("first (services just started)");
        var warm = await FloodAsync("second (services warm)");
        var report = cold.Report + "\n" + warm.Report;
        output.WriteLine(report);
        Directory.CreateDirectory(Path.Combine(ServiceProcess.RepositoryRoot, "artifacts"));
        await File.WriteAllTextAsync(Path.Combine(ServiceProcess.RepositoryRoot, "artifacts", "flood-report.txt"),
            report + "\n");

        foreach (var flood in new[] { cold, warm })
        {
            Assert.True(flood.Grants + flood.NoCapacity == requests, report);
            // NoCapacity may be none: at MaxWorkers idle workers are retired for the line, so it can drain within its
            // timeout.
            Assert.True(flood.Grants > 0, report);
            Assert.True(flood.Slowest < AllocationTimeout + QueueMargin, report);
            Assert.True(flood.PeakMemory < MemoryLimitBytes, report);
        }

        Assert.True(warm.Slowest < AllocationTimeout + DeliveryMargin, report);
        Assert.False(leaseSaga.HasExited, leaseSaga.Output);
        var violations = InvariantChecker.Check(ledger, await _cluster.CloudAsync(), await _cluster.ServiceAsync(),
            expectAllDeleted: false);
        Assert.True(violations.Count == 0, string.Join("\n", violations));

        async Task<Flood> FloodAsync(string name)
        {
            var memory = new List<long> { ResidentBytes(leaseSaga.Id) };
            var sentAt = new Dictionary<Guid, DateTime>();
            var clock = Stopwatch.StartNew();
            // Fifty publishes in flight at a time, so the flood arrives faster than one publisher confirm after
            // another.
            foreach (var chunk in Enumerable.Range(0, requests).Chunk(50))
            {
                var publishes = new List<Task>();
                foreach (var i in chunk)
                {
                    var instance = instances[i % instances.Count];
                    var request = new LeaseRequested(NewId.NextGuid(), instance,
                        LifecycleCluster.ThumbprintOf(instance), Pool, $"flood-{i}", DateTimeOffset.UtcNow);
                    ledger.Requested(request);
                    sentAt[request.LeaseId] = DateTime.UtcNow;
                    publishes.Add(_cluster.Bus.Publish(request));
                }

                await Task.WhenAll(publishes);
            }

            var published = clock.Elapsed;

            // Release every grant as it comes, as tasks that end at once would; sample memory meanwhile.
            await Eventually.True(
                async () =>
                {
                    await ReleaseNewGrantsAsync();
                    memory.Add(ResidentBytes(leaseSaga.Id));
                    var answered = ledger.Outcomes.Select(o => LeaseLedger.LeaseIdOf(o.Outcome)).ToHashSet();
                    return sentAt.Keys.All(answered.Contains);
                },
                AllocationTimeout + QueueMargin + published,
                $"an outcome for each of {requests} flooded requests",
                _cluster.Diagnostics);
            var done = clock.Elapsed;

            var first =
                ledger.Outcomes.GroupBy(o => LeaseLedger.LeaseIdOf(o.Outcome)).ToDictionary(g => g.Key, g => g.First());
            var waits = sentAt.Select(s => (Outcome: first[s.Key].Outcome, Wait: first[s.Key].At - s.Value)).ToList();
            var grants = waits.Count(w => w.Outcome is LeaseGranted);
            var noCapacity = waits.Count(w => w.Outcome is LeaseRejected { Reason: LeaseRejectionReasons.NoCapacity });
            // Turned away at once (the line was full) or after waiting in line for the allocation timeout.
            var turnedAway = waits.Where(w => w.Outcome is LeaseRejected r
                && r.Detail.Contains("MaxWaiting", StringComparison.Ordinal)).ToList();
            var slowest = waits.Max(w => w.Wait);
            var report = $"flood, {name}: {requests} requests against a pool at MaxWorkers {MaxWorkers} (allocation "
                + $"timeout {AllocationTimeout.TotalSeconds:0} s): "
                         + $"published in {published.TotalSeconds:0.0} s, all answered after {done.TotalSeconds:0.0} "
                         + $"s; {grants} granted, {noCapacity} NoCapacity "
                         + $"({turnedAway.Count} of them turned away at once, the slowest of those after "
                         + $"{(turnedAway.Count > 0 ? turnedAway.Max(w => w.Wait).TotalSeconds : 0):0.0} s), "
                         + $"{requests - grants - noCapacity} other; slowest answer {slowest.TotalSeconds:0.0} s after "
                         + $"its request; "
                         + $"LeaseSaga resident memory {memory[0] / 1048576} MB before, at most "
                         + $"{memory.Max() / 1048576} MB during";
            return new Flood(report, grants, noCapacity, slowest, memory.Max());
        }
    }

    sealed record Flood(string Report, int Grants, int NoCapacity, TimeSpan Slowest, long PeakMemory);

    /// <summary>VmRSS of a process, from /proc.</summary>
    static long ResidentBytes(int pid)
    {
        var line =
            File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
