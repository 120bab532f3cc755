using System.Diagnostics;
using System.Text;
using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using Xunit.Abstractions;

namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>
/// Invariants 1–5 while things break. Two LeaseSaga, two Provisioner, one Trust and one Reaper as processes on a
/// PRIVATE RabbitMQ node and PostgreSQL cluster (<c>scripts/chaos-servers.sh</c>: the shared servers are never
/// restarted), simulated cloud with small delays and 5 % provisioning and trust failures, lifecycle timeouts in
/// seconds. Instances lease and release, several leases each at once, publishing every request twice; meanwhile a
/// service is killed with <c>kill -9</c> every few seconds (each kind once first, then at random) and started
/// again, RabbitMQ is restarted once and PostgreSQL once. Every fault is verified (the killed pid is gone; the
/// broker's and the database's pid changed) and listed with its time. Then, with a deadline, the system must go
/// quiet: every lease answered and ended, every worker gone, every VM deleted, no timer left. The figures go to the
/// test output and to <c>artifacts/chaos-report.txt</c>; any violation, an unverified fault, a service kind never
/// killed or a run with (almost) no grants fails the test.
/// The short variant runs in <c>scripts/test.sh</c>; <c>scripts/chaos.sh</c> runs a longer one
/// (<c>DW_CHAOS_LOAD_SECONDS</c>, <c>DW_CHAOS_INSTANCES</c>, <c>DW_CHAOS_LEASES_PER_INSTANCE</c>,
/// <c>DW_CHAOS_KILL_EVERY_SECONDS</c>; <c>DW_CHAOS_SEED</c> repeats a run's choice of victims).
/// </summary>
public sealed class ChaosTests(ITestOutputHelper output)
{
    const string Pool = ServerLossSettings.Pool;
    const string RabbitMqPort = "5673";
    const string PostgresAdmin = "Host=127.0.0.1;Port=5433;Username=dw;Password=dw;Database=postgres";

    static int Setting(string name, int fallback)
        => int.TryParse(Environment.GetEnvironmentVariable(name), out var value) && value > 0 ? value : fallback;

    [Fact]
    public async Task Kills_and_server_restarts_under_load_break_no_invariant()
    {
        var loadFor = TimeSpan.FromSeconds(Setting("DW_CHAOS_LOAD_SECONDS", 60));
        var instances = Setting("DW_CHAOS_INSTANCES", 10);
        var lanes = Setting("DW_CHAOS_LEASES_PER_INSTANCE", 3);
        var killEvery = TimeSpan.FromSeconds(Setting("DW_CHAOS_KILL_EVERY_SECONDS", 4));
        var started = Stopwatch.StartNew();

        await ServersAsync("start");
        var database = PostgresTestDatabase.On(PostgresAdmin);
        await database.InitializeAsync();
        var settings = ServerLossSettings.For(RabbitMqPort, database.ConnectionString);
        settings["Lifecycle:IdleTimeout"] = "00:00:05";
        settings["Lifecycle:MaxLeaseDuration"] = "00:01:00";
        settings["Cloud:Simulated:ProvisionDelay"] = "00:00:00.500";
        settings["Cloud:Simulated:TrustDelay"] = "00:00:00.200";
        settings["Cloud:Simulated:ProvisionFailureRate"] = "0.05";
        settings["Cloud:Simulated:TrustFailureRate"] = "0.05";

        var report = new StringBuilder();
        var events = new List<string>();
        void Note(string line)
        {
            lock (events)
            {
                events.Add($"{DateTime.UtcNow:HH:mm:ss.fff} {started.Elapsed.TotalSeconds,6:0.0}s {line}");
            }
        }

        var unverified = new List<string>();

        var cluster = await LifecycleCluster.StartAsync(settings, database.ConnectionString);
        try
        {
            // The load: instances lease and release until the load time is over, every request published twice, each
            // instance holding several leases at once so that one worker granted to two of them could be seen.
            using var stopLoad = new CancellationTokenSource(loadFor);
            var loadTime = Stopwatch.StartNew();
            var stuck = new List<string>();
            var load = Task.WhenAll(Enumerable.Range(0, instances * lanes).Select(l => Task.Run(async () =>
            {
                var (i, lane) = (l / lanes, l % lanes);
                var n = 0;
                while (!stopLoad.IsCancellationRequested)
                {
                    try
                    {
                        await cluster.PlayInstanceAsync($"chaos-{i:00}", Pool, 1, _ => true, TimeSpan.FromMinutes(3),
                            seed: (i * 100 + lane) * 1000 + n++);
                    }
                    catch (TimeoutException e)
                    {
                        // An unanswered lease is a violation the checker reports; this instance stops here.
                        lock (stuck)
                        {
                            stuck.Add(e.Message.Split('\n')[0]);
                        }

                        return;
                    }
                }
            })));

            // The chaos, one act at a time: kill -9 and restart a service every few seconds (each kind once first, then
            // at random), and restart the broker (at a third of the load, once each kind was killed) and then the
            // database (at two thirds) once each.
            var seed = Setting("DW_CHAOS_SEED", Environment.TickCount & int.MaxValue);
            var random = new Random(seed);
            var firstVictims = new Queue<string>(LifecycleCluster.AllServices.Distinct().OrderBy(_ => random.Next()));
            var kills = new Dictionary<string, int>();
            var brokerRestarted = false;
            var databaseRestarted = false;
            var hungStarts = 0;
            while (!stopLoad.IsCancellationRequested)
            {
                await Task.Delay(killEvery);
                var elapsed = loadTime.Elapsed;
                if (!brokerRestarted && firstVictims.Count == 0 && elapsed > loadFor / 3)
                {
                    Note("restart RabbitMQ");
                    Note($"RabbitMQ restarted, verified: {await ServersAsync("restart-rabbitmq", "rabbitmq-pid")}");
                    brokerRestarted = true;
                    continue;
                }

                if (brokerRestarted && !databaseRestarted && elapsed > loadFor * 2 / 3)
                {
                    Note("restart PostgreSQL");
                    Note($"PostgreSQL restarted, verified: {await ServersAsync("restart-postgres", "postgres-pid")}");
                    databaseRestarted = true;
                    continue;
                }

                var candidates = firstVictims.TryDequeue(out var kind)
                    ? cluster.Services.Where(s => s.Project == kind).ToList() : cluster.Services;
                var victim = candidates[random.Next(candidates.Count)];
                var (project, pid) = (victim.Project, victim.Id);
                var restarted = cluster.KillAndStart(victim);

                // Verified: the killed process no longer exists.
                if (File.Exists($"/proc/{pid}/stat"))
                {
                    Note($"kill -9 {project} (pid {pid}): NOT verified, the process still exists");
                    unverified.Add($"kill -9 {project} (pid {pid}): the process still exists");
                }
                else
                {
                    Note($"kill -9 {project} (pid {pid}), verified gone; started again as pid {restarted.Id}");
                    kills[project] = kills.GetValueOrDefault(project) + 1;
                }
            }

            await load;
            Note("load over");
            foreach (var service in cluster.Services)
            {
                try
                {
                    await service.WaitUntilStartedAsync(TimeSpan.FromSeconds(60));
                }
                catch (Exception e) when (e is TimeoutException || service.HasExited)
                {
                    // A start that hangs (seen once, a kill coinciding with the broker's restart: the bus consumed but
                    // the host never reported started) is what an orchestrator's liveness probe restarts: /healthz only
                    // answers once the host started; one that fails (a start meeting the broker's restart, exit code 1)
                    // is what its restart policy starts again. Do the same, once, and count it in the report.
                    Note(service.HasExited
                        ? $"{service.Project} (pid {service.Id}) exited with {service.ExitCode} while starting: "
                            + $"started again"
                        : $"{service.Project} (pid {service.Id}) did not start within 60 s: killed and started again");
                    hungStarts++;
                    await cluster.KillAndStart(service).WaitUntilStartedAsync(TimeSpan.FromSeconds(90));
                }
            }

            // Quiescence: every lease answered (a lease still granted ends by release or its max duration), then
            // the hot pool drained: every worker and VM must go, and no timer may be left behind.
            await Eventually.True(
                () => cluster.Ledger.Requests.All(r => cluster.Ledger.OutcomesOf(r.LeaseId).Count > 0),
                TimeSpan.FromMinutes(3), "an outcome for every lease", cluster.Diagnostics);
            await cluster.PublishWithRetryAsync(new SetPoolSize(Pool, 0, 30));
            var quiet = true;
            try
            {
                await Eventually.True(
                    async () => await cluster.ScalarAsync("SELECT count(*) FROM workers") == 0
                                && await cluster.ScalarAsync("SELECT count(*) FROM leases WHERE \"CurrentState\" NOT "
                                    + "IN ('Released', 'Rejected', 'Revoked')") == 0
                                && (await cluster.CloudAsync()).All(v => v.Deleted),
                    TimeSpan.FromMinutes(4), "quiescence: every lease ended, every worker and VM gone");
            }
            catch (TimeoutException)
            {
                quiet = false;
            }

            Note(quiet ? "quiet" : "NOT quiet within the deadline");
            var cloud = await cluster.CloudAsync();
            var violations = InvariantChecker.Check(cluster.Ledger, cloud, await cluster.ServiceAsync(),
                expectAllDeleted: true).ToList();
            violations.AddRange(stuck.Select(s => "unanswered: " + s));
            violations.AddRange(unverified.Select(u => "fault not verified: " + u));
            violations.AddRange(LifecycleCluster.AllServices.Distinct().Where(k => !kills.ContainsKey(k))
                .Select(k => $"no {k} was killed (verified)"));
            if (!brokerRestarted || !databaseRestarted)
            {
                violations.Add($"restarts missing: RabbitMQ {(brokerRestarted ? 1 : 0)}, PostgreSQL "
                    + $"{(databaseRestarted ? 1 : 0)} (the load was too short)");
            }

            if (!quiet)
            {
                violations.Add("the system did not go quiet:\n" + cluster.Diagnostics());
            }

            var outcomes = cluster.Ledger.Requests.Select(r => r.LeaseId).Distinct()
                .Select(id => cluster.Ledger.OutcomesOf(id).FirstOrDefault()).ToList();
            var logs = cluster.Services.Concat(cluster.Stopped).Select(s => s.Output).ToList();
            report.AppendLine(
                $"chaos run: {loadFor.TotalSeconds:0} s of load, {instances} instances holding {lanes} leases each at "
                + $"once, a kill every {killEvery.TotalSeconds:0} s, total {started.Elapsed.TotalSeconds:0} s");
            report.AppendLine($"leases: {outcomes.Count} requested (each published twice), "
                + $"{outcomes.OfType<LeaseGranted>().Count()} granted "
                              + $"({outcomes.OfType<LeaseGranted>().Count(g => g.Reused)} re-used), "
                              + string.Join("", outcomes.OfType<LeaseRejected>().GroupBy(r => r.Reason)
                                  .Select(g => $"{g.Count()} rejected {g.Key}, "))
                              + $"{outcomes.Count(o => o is null)} unanswered");
            report.AppendLine($"victims chosen with DW_CHAOS_SEED={seed}");
            report.AppendLine($"kills: {kills.Values.Sum()} "
                + $"({string.Join(", ", kills.OrderBy(k => k.Key).Select(k => $"{k.Key} {k.Value}"))}); restarts: "
                + $"RabbitMQ {(brokerRestarted ? 1 : 0)}, PostgreSQL {(databaseRestarted ? 1 : 0)}; hung or failed "
                + $"starts restarted: {hungStarts}");
            report.AppendLine($"VMs: {cloud.Count} created, {cloud.Count(v => v.Deleted)} deleted; "
                              + $"sweep re-deliveries logged: {logs.Sum(o => CountOf(o, "Sweep re-delivered"))}; "
                              + $"orphan VMs deleted by the sweep: {logs.Sum(o => CountOf(o, "Deleting orphan VM"))}");
            // A run that grants nothing proves nothing: most leases must get a worker despite the chaos.
            if (outcomes.OfType<LeaseGranted>().Count() == 0 || outcomes.OfType<LeaseGranted>()
                .Count() < outcomes.Count / 2)
            {
                violations.Add(
                    $"only {outcomes.OfType<LeaseGranted>().Count()} of {outcomes.Count} leases were granted");
            }

            report.AppendLine($"violations: {violations.Count}");
            foreach (var violation in violations)
            {
                report.AppendLine("  " + violation);
            }

            report.AppendLine("faults and timeline (UTC, seconds since start):");
            foreach (var e in events)
            {
                report.AppendLine("  " + e);
            }

            output.WriteLine(report.ToString());
            var artifacts = Path.Combine(ServiceProcess.RepositoryRoot, "artifacts", "chaos-logs");
            Directory.CreateDirectory(artifacts);
            await File.WriteAllTextAsync(Path.Combine(artifacts, "..", "chaos-report.txt"), report.ToString());
            foreach (var service in cluster.Services.Concat(cluster.Stopped))
            {
                await File.WriteAllTextAsync(Path.Combine(artifacts, $"{service.Project}-{service.Id}.log"),
                    service.Output);
            }
            Assert.True(violations.Count == 0, report.ToString());
        }
        finally
        {
            await cluster.DisposeAsync();
            await database.DisposeAsync();
            await ServersAsync("stop");
        }
    }

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

    /// <summary>
    /// Runs <c>scripts/chaos-servers.sh</c> (start, restart-rabbitmq, restart-postgres, stop) and waits for it; for a
    /// restart, returns the script's "old pid -> new pid" line, which it prints only once it verified the change.
    /// </summary>
    static async Task<string> ServersAsync(string command, string? verifiedBy = null)
    {
        var output = await ServerScript.RunAsync("chaos-servers.sh", command);
        if (verifiedBy is null)
        {
            return "";
        }

        return output.Split('\n').FirstOrDefault(l => l.StartsWith(verifiedBy + " ", StringComparison.Ordinal))
               ?? throw new InvalidOperationException(
                   $"chaos-servers.sh {command} did not report the pid change: {output}");
    }
}
