using System.Diagnostics;
using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using Xunit.Abstractions;

namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>
/// A broker node lost under load. A private three-node RabbitMQ cluster on loopback (<c>scripts/cluster-servers.sh</c>:
/// the shared broker is never touched); the six services as processes, each connected first to a different node and
/// given the whole node list (<c>RabbitMq:ClusterNodes</c>), the test's bus on a third. Instances lease and release;
/// once each could have had a lease granted, the node leading the most queues is killed with <c>kill -9</c> (its OS
/// process must be gone) and the load goes on for 16 s. Then every lease must be answered, every service must be ready
/// again (its bus reconnected), the drained pool must leave no VM behind and the <see cref="InvariantChecker"/> must
/// find nothing. <c>DW_CLUSTER_QUEUE_TYPE</c> (e.g. <c>Classic</c>) and <c>DW_CLUSTER_NO_NODE_LIST=1</c> plant the
/// faults this test must catch.
/// </summary>
public sealed class BrokerNodeLossTests(PostgresTestDatabase database, ITestOutputHelper output)
    : IClassFixture<PostgresTestDatabase>
{
    const string Pool = ServerLossSettings.Pool;
    const int FirstPort = 5680;
    const int Instances = 8;
    static readonly TimeSpan LoadAfterKill = TimeSpan.FromSeconds(16);

    static string NodeName(int node) => $"dwquorum{node}@localhost";

    /// <summary>Start <paramref name="start"/> (the test's bus is -1) connects first to node start mod 3, then the next
    /// ones.</summary>
    static IReadOnlyDictionary<string, string?> NodesFor(int start)
    {
        var first = ((start % 3) + 3) % 3;
        if (Environment.GetEnvironmentVariable("DW_CLUSTER_NO_NODE_LIST") == "1")
        {
            return new Dictionary<string, string?> { ["RabbitMq:Port"] = $"{FirstPort + first}" };
        }

        return Enumerable.Range(0, 3)
            .ToDictionary(i => $"RabbitMq:ClusterNodes:{i}", i => (string?)$"127.0.0.1:{FirstPort + (first + i) % 3}");
    }

    [Fact]
    public async Task Killing_the_node_that_leads_most_queues_under_load_loses_no_lease_and_breaks_no_invariant()
    {
        var started = Stopwatch.StartNew();
        await ClusterAsync("start");
        var clusterUp = started.Elapsed;
        var settings = ServerLossSettings.For($"{FirstPort}", database.ConnectionString);
        settings["RabbitMq:QueueType"] = Environment.GetEnvironmentVariable("DW_CLUSTER_QUEUE_TYPE") ?? "Quorum";
        settings["Lifecycle:IdleTimeout"] = "00:00:03";
        settings["Lifecycle:MaxLeaseDuration"] = "00:02:00";
        settings["Cloud:Simulated:ProvisionDelay"] = "00:00:00.300";
        settings["Cloud:Simulated:TrustDelay"] = "00:00:00.100";

        LifecycleCluster? cluster = null;
        try
        {
            cluster = await LifecycleCluster.StartAsync(settings, database.ConnectionString, perService: NodesFor);
            var servicesUp = started.Elapsed;
            output.WriteLine(
                $"cluster up in {clusterUp.TotalSeconds:0}s, services in {(servicesUp - clusterUp).TotalSeconds:0}s");

            // The load: instances lease and release one lease after another until stopped.
            using var stopLoad = new CancellationTokenSource();
            var unanswered = new List<string>();
            var leases = 0;
            var loadStarted = started.Elapsed;
            var load = Task.WhenAll(Enumerable.Range(0, Instances).Select(i => Task.Run(async () =>
            {
                while (!stopLoad.IsCancellationRequested)
                {
                    try
                    {
                        await cluster.PlayInstanceAsync($"node-loss-{i}", Pool, 1, _ => false, TimeSpan.FromSeconds(90),
                            seed: i * 1000 + Interlocked.Increment(ref leases));
                    }
                    catch (TimeoutException e)
                    {
                        lock (unanswered)
                        {
                            unanswered.Add(e.Message.Split('\n')[0]);
                        }

                        return;
                    }
                }
            })));

            // Under load, kill the node that leads (or, for classic queues, holds) the most of the services' queues.
            await Eventually.True(() => Grants(cluster).Count >= Instances, TimeSpan.FromSeconds(60),
                $"{Instances} leases granted", cluster.Diagnostics);
            var queues = await QueuesAsync();
            var victim = Enumerable.Range(1, 3).MaxBy(n => queues.Count(q => q.Leader == NodeName(n)));
            var led = queues.Count(q => q.Leader == NodeName(victim));
            var grantsBeforeKill = Grants(cluster).Count;
            var pid = int.Parse((await ClusterAsync($"kill {victim}")).Trim());
            var killedAt = DateTime.UtcNow;
            Assert.False(ProcessExists(pid), $"node {victim}'s process {pid} is still there after kill -9");
            output.WriteLine($"{started.Elapsed.TotalSeconds:0.0}s killed {NodeName(victim)} (pid {pid}), leader of "
                + $"{led} of {queues.Count} queues, after {grantsBeforeKill} grants");

            stopLoad.CancelAfter(LoadAfterKill);
            await load;
            var loadTime = started.Elapsed - loadStarted;
            await Eventually.True(
                () => cluster.Ledger.Requests.All(r => cluster.Ledger.OutcomesOf(r.LeaseId).Count > 0),
                TimeSpan.FromSeconds(60), "an outcome for every lease", cluster.Diagnostics);
            // Every service is connected again: those on the killed node moved to the next node of their list.
            foreach (var service in cluster.Services)
            {
                await Eventually.True(
                    async () =>
                    {
                        try
                        {
                            await Readiness.AssertBothHealthyAsync(service.HttpAddress);
                            return true;
                        }
                        catch (Exception e) when (e is HttpRequestException or TaskCanceledException
                            or Xunit.Sdk.XunitException)
                        {
                            return false;
                        }
                    },
                    TimeSpan.FromSeconds(60), $"{service.Project} (pid {service.Id}) ready, its bus connected",
                    cluster.Diagnostics);
            }

            var grants = Grants(cluster);
            var grantsAfterKill = cluster.Ledger.Outcomes.Count(o => o.Outcome is LeaseGranted && o.At > killedAt);

            await cluster.PublishWithRetryAsync(new SetPoolSize(Pool, 0, 30));
            await Eventually.True(
                async () => await cluster.ScalarAsync("SELECT count(*) FROM workers") == 0
                    && (await cluster.CloudAsync()).All(v => v.Deleted),
                TimeSpan.FromSeconds(90), "every worker gone and every VM deleted", cluster.Diagnostics);

            var violations = InvariantChecker.Check(cluster.Ledger, await cluster.CloudAsync(),
                await cluster.ServiceAsync(), expectAllDeleted: true).ToList();
            violations.AddRange(unanswered.Select(u => "unanswered: " + u));
            var requested = cluster.Ledger.Requests.Select(r => r.LeaseId).Distinct().Count();
            var logs = cluster.Services.Concat(cluster.Stopped).Select(s => s.Output).ToList();
            output.WriteLine($"{requested} leases requested by {Instances} instances over about "
                + $"{loadTime.TotalSeconds:0}s, {grants.Count} granted "
                             + $"({grantsAfterKill} after the kill), {requested - grants.Count} rejected; "
                             + $"sweep re-deliveries logged: {logs.Sum(o => CountOf(o, "Sweep re-delivered"))}; total "
                             + $"{started.Elapsed.TotalSeconds:0}s");

            // Every durable queue the services declared is a quorum queue (only the temporary ones are classic).
            var classic =
                (await QueuesAsync()).Where(q => q.Durable && q.Type != "quorum").Select(q => q.Name).ToList();
            if (settings["RabbitMq:QueueType"] == "Quorum" && classic.Count > 0)
            {
                violations.Add("durable classic queues: " + string.Join(", ", classic));
            }

            // A run that leases little after the kill proves nothing about the nodes that are left.
            if (grantsAfterKill < Instances)
            {
                violations.Add($"only {grantsAfterKill} leases granted after the kill");
            }

            Assert.True(violations.Count == 0, string.Join("\n", violations) + "\n" + cluster.Diagnostics());
            Assert.All(cluster.Services, s => Assert.False(s.HasExited, $"{s.Project} (pid {s.Id}) exited"));
        }
        finally
        {
            if (cluster is not null)
            {
                await cluster.DisposeAsync();
            }

            await ClusterAsync("stop");
        }
    }

    static IReadOnlyList<LeaseGranted> Grants(LifecycleCluster cluster)
        => cluster.Ledger.Outcomes.Select(o => o.Outcome).OfType<LeaseGranted>().DistinctBy(g => g.LeaseId).ToList();

    static int CountOf(string text, string what)
    {
        var count = 0;
        for (var i = text.IndexOf(what, StringComparison.Ordinal); i >= 0; i =
            text.IndexOf(what, i + what.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }

    static bool ProcessExists(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>A queue and the node it depends on: a quorum queue's leader, a classic queue's only node.</summary>
    sealed record QueueInfo(string Name, string Type, bool Durable, string Leader);

    static async Task<IReadOnlyList<QueueInfo>> QueuesAsync()
        => (await ClusterAsync("queues")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split('\t'))
            .Where(f => f.Length >= 7)
            .Select(f => new QueueInfo(f[0], f[1], f[2] == "true",
                f[5].Length > 0 ? f[5] : f[6].TrimStart('<').Split('.')[0]))
            .ToList();

    /// <summary>Runs <c>scripts/cluster-servers.sh</c> and returns its standard output.</summary>
    static Task<string> ClusterAsync(string arguments)
        => ServerScript.RunAsync("cluster-servers.sh", arguments.Split(' '));
}
