using System.Diagnostics;
using DynamicWorkers.Bench;
using DynamicWorkers.Infrastructure.Messaging;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// The benchmark (scripts/bench.sh runs it): one run, on its own RabbitMQ vhost and PostgreSQL database, of the
// broker's own limit, hot and re-use lease latency, sustained lifecycle throughput, footprint and scale-out,
// printed as one table and written as markdown. `--smoke` runs every section for a second or so (scripts/test.sh).

// Loopback only: MassTransit would otherwise try to post usage telemetry to the internet (the services inherit this).
Environment.SetEnvironmentVariable("MASSTRANSIT_USAGE_TELEMETRY", "false");
var smoke = args.Contains("--smoke");
// --profile: only the closed-loop lifecycle run and where its cost goes (for before/after comparisons of a change).
var profileOnly = args.Contains("--profile");
// --only hot,reuse,lifecycle,scale-out,raw: just those sections (quick before/after runs of one figure).
var only = args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault()?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
bool Wanted(string section) => only is null || only.Contains(section);
var output = args.SkipWhile(a => a != "--out").Skip(1).FirstOrDefault()
             ?? Path.Combine(Paths.RepositoryRoot, smoke ? "artifacts/bench/smoke.md" : profileOnly ? "artifacts/bench/profile.md" : only is not null ? "artifacts/bench/only.md" : "bench/results/latest.md");
var plan = smoke ? BenchPlan.Smoke : BenchPlan.Full;
// Sections not started by then are skipped (and reported), so scripts/bench.sh's 10-minute limit is never the one that stops the run.
var budget = TimeSpan.FromMinutes(8);
var logs = Path.Combine(Paths.RepositoryRoot, "artifacts", "bench", "logs");
var clock = Stopwatch.StartNew();
void Say(string line) => Console.Error.WriteLine($"[bench {clock.Elapsed:mm\\:ss}] {line}");

var report = new Report(smoke);
await report.CollectMachineFactsAsync();

// reserve: time the section itself may need past the budget (scale-out starts a process and warms it up first).
bool TimeLeft(string section, TimeSpan reserve = default)
{
    if (clock.Elapsed + reserve < budget)
    {
        return true;
    }

    Say($"skipping {section}: past the {budget.TotalMinutes:0}-minute budget");
    report.Skipped(section);
    return false;
}

await using var vhost = await BenchVirtualHost.CreateAsync();
await using var database = await BenchDatabase.CreateAsync();
report.Fact("RabbitMQ", await vhost.BrokerVersionAsync());
report.Fact("PostgreSQL", await database.ScalarAsync("SHOW server_version"));
report.Fact("services run from", (Paths.PublishedServices is null ? $"the {Paths.BuildConfiguration} build output (JIT)" : "a ReadyToRun publish (as the Dockerfile builds them)")
    + $", DOTNET_GCgen0size {Service.Gen0Size("LeaseSaga")} for LeaseSaga, {Service.Gen0Size("Provisioner")} for the others");
Say($"vhost {vhost.Name}, database {database.Name}, service logs in {logs}");
// Named for scripts/bench.sh, which removes them if the run is killed at its time limit before it can.
var runFile = Path.Combine(Paths.RepositoryRoot, "artifacts", "bench", "run.env");
Directory.CreateDirectory(Path.GetDirectoryName(runFile)!);
await File.WriteAllTextAsync(runFile, $"VHOST={vhost.Name}\nDATABASE={database.Name}\n");

// 1. The broker's own limit, before anything else runs on it.
var rawClient = double.NaN;
if (!profileOnly && Wanted("raw"))
{
    Say("raw broker: RabbitMQ.Client");
    rawClient = await RawAsync("raw RabbitMQ.Client run", () => RawBroker.RabbitMqClientAsync(vhost, plan.Raw));
    Say($"raw broker: {rawClient:0} msg/s; MassTransit");
    var rawMassTransit = await RawAsync("raw MassTransit run", () => RawBroker.MassTransitAsync(vhost, plan.Raw));
    Say($"MassTransit: {rawMassTransit:0} msg/s");
    report.Raw(rawClient, rawMassTransit);
}

// One raw run's rate, with the CPU it took per message noted.
async Task<double> RawAsync(string run, Func<Task<RawRun>> measure)
{
    var cpuBefore = ProcessCpu.Servers();
    var result = await measure();
    report.Profile(run, "CPU ms per message by process", PerUnit(cpuBefore, ProcessCpu.Servers(), result.Messages, minimum: 0.001), "0.000");
    return result.PerSecond;
}

// 2. The services, each its own process, the simulated cloud at zero latency.
var settings = vhost.Settings.Concat(new Dictionary<string, string?>
{
    ["Database:Provider"] = "Postgres",
    ["ConnectionStrings:Default"] = database.ConnectionString(20),
    [$"Pools:{BenchPlan.HotPool}:Image"] = "bench-image",
    [$"Pools:{BenchPlan.HotPool}:HotTarget"] = profileOnly ? "0" : plan.HotTarget.ToString(),
    [$"Pools:{BenchPlan.HotPool}:MaxWorkers"] = "5000",
    [$"Pools:{BenchPlan.ReusePool}:Image"] = "bench-image",
    [$"Pools:{BenchPlan.ReusePool}:HotTarget"] = profileOnly ? "0" : "20",
    [$"Pools:{BenchPlan.ReusePool}:MaxWorkers"] = "5000",
    [$"Pools:{BenchPlan.CyclePool}:Image"] = "bench-image",
    [$"Pools:{BenchPlan.CyclePool}:HotTarget"] = "20",
    [$"Pools:{BenchPlan.CyclePool}:MaxWorkers"] = "5000",
    // The idle timeout is left at its default (60 min), as deployed: one of 5 s, as the benchmark had before, falls due too
    // soon to be held for its cancel (HeldSchedules.StoreLead, 5 s), so every release stored a timer and every re-use deleted it.
    ["Lifecycle:ProvisioningTimeout"] = "00:01:00",
    ["Scheduler:ClusterCheckinInterval"] = "00:00:02",
    ["Cloud:Simulated:ProvisionDelay"] = "00:00:00",
    ["Cloud:Simulated:TrustDelay"] = "00:00:00",
    ["Cloud:Simulated:DeleteDelay"] = "00:00:00",
}).ToList();

var services = new List<Service>();
try
{
    // Provisioner, Trust and Reaper first: a message published before its consumer's queue is bound is lost, and
    // LeaseSaga starts provisioning the hot pools the moment it is up. LeaseSaga then migrates the empty database.
    // One at a time, so each start is timed on its own, as in its own container: four JIT-heavy starts at once on two
    // cores would time the contention between them.
    Say("starting Provisioner, Trust, Reaper, then LeaseSaga (migrates the database), one at a time");
    foreach (var project in new[] { "Provisioner", "Trust", "Reaper", "LeaseSaga" })
    {
        var service = Service.Start(project, project, settings, logs);
        services.Add(service);
        await service.WaitUntilReadyAsync(TimeSpan.FromSeconds(120));
    }

    var leaseSaga = services[^1];
    foreach (var service in services)
    {
        Say($"{service.Name} ready after {service.ReadyAfter.TotalMilliseconds:0} ms");
    }

    var book = new LeaseBook();
    var clientBuilder = Host.CreateApplicationBuilder();
    clientBuilder.Logging.SetMinimumLevel(LogLevel.Warning);
    clientBuilder.Configuration.AddInMemoryCollection(vhost.Settings);
    clientBuilder.Services.AddSingleton(book);
    clientBuilder.Services.AddDynamicWorkersBus(clientBuilder.Configuration, bus => bus.AddConsumer<OutcomeConsumer>());
    using var client = clientBuilder.Build();
    await client.StartAsync();
    var load = new LeaseLoad(client.Services.GetRequiredService<IBus>(), book);

    async Task WaitForHotWorkersAsync(string pool, int count)
    {
        await RawBroker.WaitForAsync(
            () => int.Parse(database.ScalarAsync($"SELECT count(*) FROM workers WHERE \"Pool\" = '{pool}' AND \"CurrentState\" = 'Ready'").GetAwaiter().GetResult()) >= count,
            TimeSpan.FromSeconds(240),
            $"{count} hot workers in {pool}",
            pollMilliseconds: 200);
    }

    // Waits (at most a minute) until no message is queued, so one section's backlog is not measured in the next.
    async Task DrainAsync(string before)
    {
        try
        {
            await RawBroker.WaitForAsync(
                () => vhost.QueueDepthsAsync().GetAwaiter().GetResult().Where(q => !q.Key.EndsWith("_error", StringComparison.Ordinal)).Sum(q => q.Value) == 0,
                TimeSpan.FromSeconds(60),
                $"every queue to drain before {before}",
                pollMilliseconds: 1000);
        }
        catch (TimeoutException e)
        {
            Say(e.Message);
            report.Note($"{before} started with messages still queued: its figures include some of the earlier load.");
        }
    }

    // Every pool back at its hot target and every queue empty: a pool refilling in the background (through the same
    // pool saga endpoint) would otherwise be measured as part of the next section.
    async Task WaitForPoolsAsync(string before)
    {
        if (!profileOnly)
        {
            await WaitForHotWorkersAsync(BenchPlan.HotPool, plan.HotTarget);
            await WaitForHotWorkersAsync(BenchPlan.ReusePool, 1);
        }

        await WaitForHotWorkersAsync(BenchPlan.CyclePool, 20);
        await DrainAsync(before);
    }

    // A rate that lost leases, or answered them seconds late, is past what the system sustains here: higher rates
    // would only pile up a backlog and eat the time budget, so they are not run.
    bool Overloaded(string kind, int rate, LoadResult? lower)
    {
        if (lower is null || (lower.Clean && lower.Percentile(99) <= 5000))
        {
            return false;
        }

        Say($"not running {kind} leases at {rate}/s: a lower rate was not sustained");
        report.NotRun(kind, rate, "a lower rate was not sustained (leases lost or p99 over 5 s)");
        return true;
    }

    // The services', the servers' and the whole machine's CPU time so far (see ProcessCpu).
    Dictionary<string, long> CpuByProcess()
        => services.ToDictionary(x => x.Name, x => x.CpuMilliseconds()).Concat(ProcessCpu.Servers()).ToDictionary();

    // What the broker and the database alone took: the most the machine could do even if the services took no CPU at all.
    // Said only when both run on this machine (neither took nothing).
    void ServersAlone(string run, string unit, Dictionary<string, long> before, Dictionary<string, long> after, int units, string? goal)
    {
        var rabbitMq = after["RabbitMQ"] - before["RabbitMQ"];
        var postgres = after["PostgreSQL"] - before["PostgreSQL"];
        var servers = (rabbitMq + postgres) / (double)Math.Max(1, units);
        if (rabbitMq > 0 && postgres > 0)
        {
            report.Note($"RabbitMQ and PostgreSQL alone took {servers:0.0} ms of CPU per {unit} ({run}): on {Environment.ProcessorCount} cores, "
                        + $"at most {Environment.ProcessorCount * 1000 / servers:0} {unit}s a second even if the services took none"
                        + (goal is null ? "." : $"; {goal}."));
        }
    }

    // Services that just started still compile their code paths as they first run them (the JIT): a closed loop of
    // whole lifecycles first, so the figures below are of services that have run, as in production.
    async Task WarmUpAsync(string label, string prefix)
    {
        Say($"{label}: closed-loop lifecycles for {plan.Warmup.TotalSeconds:0} s");
        Say($"{label}: " + Report.Describe(await load.ClosedLoopAsync(BenchPlan.CyclePool, 8, plan.Warmup, prefix)));
    }

    await WaitForPoolsAsync("the warm-up");
    await WarmUpAsync("warm-up", "warmup");

    // 3. Hot-pool latency: every lease from a new instance, so it needs a hot worker and a trust step.
    LoadResult? lowerHot = null;
    foreach (var rate in profileOnly || !Wanted("hot") ? [] : plan.Rates)
    {
        if (!TimeLeft($"hot leases at {rate}/s") || Overloaded("hot", rate, lowerHot))
        {
            continue;
        }

        // Workers count as ready before the pool has read all their WorkerReady notices: drain after, not before.
        await WaitForHotWorkersAsync(BenchPlan.HotPool, plan.HotTarget);
        await DrainAsync($"hot leases at {rate}/s");
        // At most 80 % of the hot pool per rate, so that no lease has to wait for a VM to be provisioned.
        var window = TimeSpan.FromSeconds(Math.Min(plan.Latency.TotalSeconds, plan.HotTarget * 0.8 / rate));
        Say($"hot leases at {rate}/s for {window.TotalSeconds:0.#} s");
        var timingsBefore = await ConsumeTimings.ReadAsync(leaseSaga);
        var cpuBefore = CpuByProcess();
        var result = lowerHot = await load.OpenLoopAsync(BenchPlan.HotPool, rate, window, n => $"hot-{rate}-{n:00000}");
        var cpuAfter = CpuByProcess();
        report.Latency("hot", rate, result);
        // Up to the last grant: replacing the workers taken goes on after it, and is counted only as far as it got.
        var run = $"hot leases at {rate}/s, first request to last grant";
        report.Profile(run, "CPU ms per hot lease by process", PerUnit(cpuBefore, cpuAfter, result.Granted));
        if (rate == Report.HotGoalRate)
        {
            ServersAlone(run, "hot lease", cpuBefore, cpuAfter, result.Granted, $"the goal is {rate} a second, each within {Report.HotP99GoalMs:0} ms");
        }

        report.Note($"LeaseSaga's busiest consumers during hot leases at {rate}/s (MassTransit's consume timings): "
                    + string.Join(", ", ConsumeTimings.Between(timingsBefore, await ConsumeTimings.ReadAsync(leaseSaga))));
        Say(Report.Describe(result));
    }

    // Re-use: `rate` instances, each already holding an idle worker, each leasing again about once a second.
    LoadResult? lowerReuse = null;
    foreach (var rate in profileOnly || !Wanted("reuse") ? [] : plan.Rates)
    {
        if (!TimeLeft($"re-use leases at {rate}/s") || Overloaded("re-use", rate, lowerReuse))
        {
            continue;
        }

        await DrainAsync($"re-use leases at {rate}/s");

        Say($"re-use leases at {rate}/s: warming {rate} instances");
        await load.OpenLoopAsync(BenchPlan.ReusePool, rate, TimeSpan.FromSeconds(1), n => $"reuse-{rate}-{n:000}");
        await Task.Delay(TimeSpan.FromSeconds(1)); // the warm-up releases reach the pool; not a synchronisation of the result
        Say($"re-use leases at {rate}/s for {plan.Latency.TotalSeconds:0} s");
        var result = lowerReuse = await load.OpenLoopAsync(BenchPlan.ReusePool, rate, plan.Latency, n => $"reuse-{rate}-{n % rate:000}");
        report.Latency("re-use", rate, result);
        Say(Report.Describe(result));
    }

    void ReportFootprints()
    {
        foreach (var service in services)
        {
            report.Footprint(service.Name, service.Memory(), service.ReadyAfter);
        }
    }

    // Scale-out compares with the closed loop: `--only scale-out` runs both (without the holds).
    if (!Wanted("lifecycle") && !Wanted("scale-out"))
    {
        ReportFootprints();
        await client.StopAsync();
        return Finish();
    }

    // The closed loop of lifecycles, with where its cost goes: messages, rows written and CPU per lifecycle.
    async Task<(LoadResult Result, double MessagesPerLifecycle)> ProfiledClosedLoopAsync(string prefix, string run)
    {
        await Task.Delay(plan.StatsSettle);
        var deliveredBefore = await vhost.DeliveredAsync();
        var queuesBefore = await vhost.DeliveredByQueueAsync();
        var tablesBefore = await database.RowWritesByTableAsync();
        var cpuBefore = CpuByProcess();
        Say($"{run}: {plan.ClosedLoopInstances} instances in a closed loop for {plan.Closed.TotalSeconds:0} s");
        var result = await load.ClosedLoopAsync(BenchPlan.CyclePool, plan.ClosedLoopInstances, plan.Closed, prefix);
        Say(Report.Describe(result));
        await Task.Delay(plan.StatsSettle);
        var messages = (await vhost.DeliveredAsync() - deliveredBefore) / (double)Math.Max(1, result.Granted);
        Say($"{messages:0.0} messages delivered per lifecycle");
        report.Profile(run, "deliveries per lifecycle by queue", PerUnit(queuesBefore, await vhost.DeliveredByQueueAsync(), result.Granted));
        report.Profile(run, "rows written per lifecycle by table", PerUnit(tablesBefore, await database.RowWritesByTableAsync(), result.Granted));
        var cpuAfter = CpuByProcess();
        report.Profile(run, "CPU ms per lifecycle by process", PerUnit(cpuBefore, cpuAfter, result.Granted));
        ServersAlone(run, "lifecycle", cpuBefore, cpuAfter, result.Granted,
            double.IsNaN(rawClient) ? null : $"the ≥ {Report.RatioGoal:P0} goal needs {Report.RatioGoal * rawClient / messages:0} a second at {messages:0.0} messages each");
        return (result, messages);
    }

    // 4. Lifecycle throughput: closed loop to find the ceiling (and count messages per lifecycle), then an open-loop hold.
    // The earlier sections' tail (the hot pool refilling, the released workers' timers) must not be counted against this run.
    await WaitForPoolsAsync("the lifecycle run");
    var (ceiling, messagesPerLifecycle) = await ProfiledClosedLoopAsync("cycle", "closed-loop run");
    if (profileOnly)
    {
        report.Lifecycle(ceiling, messagesPerLifecycle, null, rawClient, holdsRun: false);
        await client.StopAsync();
        return Finish();
    }

    HoldResult? held = null;
    foreach (var share in Wanted("lifecycle") ? plan.HoldShares : [])
    {
        if (!TimeLeft($"the lifecycle hold at {share:P0} of the ceiling"))
        {
            break;
        }

        var rate = Math.Max(1, Math.Floor(ceiling.CyclesPerSecond * share));
        if (share != plan.HoldShares[0])
        {
            // A rate that did not hold leaves a backlog: the next, lower one must not start behind it.
            await DrainAsync($"the hold at {rate}/s");
        }

        var instances = HoldResult.Instances(rate, plan.ClosedLoopInstances);
        Say($"holding {rate}/s: warming {instances} instances");
        Say("warm-up: " + Report.Describe(await HoldResult.WarmAsync(load, BenchPlan.CyclePool, rate, instances)));
        await DrainAsync($"the hold at {rate}/s");
        Say($"holding {rate}/s for {plan.Hold.TotalSeconds:0} s ({share:P0} of the closed-loop ceiling, {instances} instances)");
        var hold = await HoldResult.RunAsync(load, vhost, BenchPlan.CyclePool, rate, plan.Hold, instances);
        Say(hold.Describe());
        report.Hold(hold);
        if (hold.Held)
        {
            held = hold;
            break;
        }
    }

    report.Lifecycle(ceiling, messagesPerLifecycle, held, rawClient, holdsRun: Wanted("lifecycle"));

    // 5. Footprint after the load.
    ReportFootprints();

    // 6. Scale-out: a second LeaseSaga on the same database and queues, the same closed loop again.
    if (Wanted("scale-out") && TimeLeft("scale-out", reserve: TimeSpan.FromMinutes(1.5)))
    {
        await DrainAsync("scale-out");
        Say("scale-out: starting a second LeaseSaga");
        var second = Service.Start("LeaseSaga", "LeaseSaga-2", settings, logs);
        services.Add(second);
        await second.WaitUntilReadyAsync(TimeSpan.FromSeconds(120));
        // The second process warms up as the first did, so that the run compares two running LeaseSagas with one.
        await WarmUpAsync("scale-out warm-up", "scaled-warmup");
        await DrainAsync("the scale-out run");
        var (scaled, _) = await ProfiledClosedLoopAsync("scaled", "scale-out run");
        report.Footprint(second.Name + " (joins a migrated database)", second.Memory(), second.ReadyAfter);
        report.ScaleOut(ceiling, scaled);
    }

    var errors = (await vhost.QueueDepthsAsync()).Where(q => q.Key.EndsWith("_error", StringComparison.Ordinal)).Sum(q => q.Value);
    report.Errors(errors);
    await client.StopAsync();
}
finally
{
    foreach (var service in services)
    {
        await service.DisposeAsync();
    }

    File.Delete(runFile);
}

return Finish();

int Finish()
{
    var table = report.Render();
    Console.WriteLine(table);
    Directory.CreateDirectory(Path.GetDirectoryName(output)!);
    File.WriteAllText(output, table);
    Say($"written to {output}");
    return report.Failures.Count == 0 ? 0 : Fail(report.Failures);
}

// Each counter's growth per lifecycle, hot lease or message; smaller than minimum is left out (next to nothing done).
static IEnumerable<(string Name, double PerUnit)> PerUnit(
    IReadOnlyDictionary<string, long> before, IReadOnlyDictionary<string, long> after, int units, double minimum = 0.05)
    => after.Select(a => (a.Key, (a.Value - before.GetValueOrDefault(a.Key)) / (double)Math.Max(1, units)))
        .Where(x => x.Item2 >= minimum)
        .OrderByDescending(x => x.Item2);

static int Fail(IEnumerable<string> failures)
{
    foreach (var failure in failures)
    {
        Console.Error.WriteLine($"bench: FAILED: {failure}");
    }

    return 1;
}
