using System.Diagnostics;
using System.Globalization;
using DynamicWorkers.Bench;
using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Messaging;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// The benchmark (scripts/bench.sh runs it): one run, on its own RabbitMQ vhost and PostgreSQL database, of the
// broker's own limit, the lifecycle written by hand, hot and re-use lease latency, sustained lifecycle throughput,
// one pool against many, footprint, scale-out and pool size, printed as one table and written as markdown. `--smoke`
// runs every section for a second or so (scripts/test.sh).

// Loopback only: MassTransit would otherwise try to post usage telemetry to the internet (the services inherit this).
Environment.SetEnvironmentVariable("MASSTRANSIT_USAGE_TELEMETRY", "false");
var smoke = args.Contains("--smoke");
// --profile: only the closed-loop lifecycle run and where its cost goes (for before/after comparisons of a change).
var profileOnly = args.Contains("--profile");
// --only raw,raw-lifecycle,hot,reuse,lifecycle,pools,scale-out,pool-size: just those sections (quick before/after runs
// of one figure).
var only = args.SkipWhile(a => a != "--only").Skip(1)
    .FirstOrDefault()?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
bool Wanted(string section) => only is null || only.Contains(section);
var output = args.SkipWhile(a => a != "--out").Skip(1).FirstOrDefault()
             ?? Path.Combine(Paths.RepositoryRoot,
                 smoke ? "artifacts/bench/smoke.md"
                 : profileOnly ? "artifacts/bench/profile.md"
                 : only is not null ? "artifacts/bench/only.md"
                 : "bench/results/latest.md");
var plan = smoke ? BenchPlan.Smoke : BenchPlan.Full;
// Sections not started by then are skipped (and reported), so scripts/bench.sh's 20-minute limit is never the one that
// stops the run.
var budget = TimeSpan.FromMinutes(17);
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
report.Fact("services run from",
    (Paths.PublishedServices is null ? $"the {Paths.BuildConfiguration} build output (JIT)"
    : "a ReadyToRun publish (as the Dockerfile builds them)")
    + $", DOTNET_GCgen0size {Service.Gen0Size("LeaseSaga")} for LeaseSaga, {Service.Gen0Size("Provisioner")} for the "
    + "others");
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

// The lifecycle written by hand (RabbitMQ.Client and Npgsql, no services): the denominator of the sustained-throughput
// goal.
var rawLifecycles = double.NaN;
if (!profileOnly && Wanted("raw-lifecycle"))
{
    Say($"raw lifecycle: {plan.ClosedLoopInstances} closed loops for {plan.RawLifecycle.TotalSeconds:0} s");
    var cpuBefore = ProcessCpu.Servers();
    var run = await RawLifecycle.RunAsync(vhost, database, plan.ClosedLoopInstances, plan.RawLifecycle);
    report.Profile("raw lifecycle run", "CPU ms per lifecycle by process",
        PerUnit(cpuBefore, ProcessCpu.Servers(), run.Lifecycles, minimum: 0.01), "0.00");
    report.RawLifecycle(run, plan.ClosedLoopInstances);
    rawLifecycles = run.PerSecond;
    Say($"raw lifecycle: {run.Lifecycles} lifecycles, {run.PerSecond:0}/s, request → grant "
        + $"p99 {Stats.Percentile(run.GrantMs, 99):0.0} ms, {run.Lost} lost");
}

// One raw run's rate, with the CPU it took per message noted.
async Task<double> RawAsync(string run, Func<Task<RawRun>> measure)
{
    var cpuBefore = ProcessCpu.Servers();
    var result = await measure();
    report.Profile(run, "CPU ms per message by process",
        PerUnit(cpuBefore, ProcessCpu.Servers(), result.Messages, minimum: 0.001), "0.000");
    return result.PerSecond;
}

// Only the raw runs asked for: no services to start.
if (only is not null && only.All(section => section is "raw" or "raw-lifecycle"))
{
    File.Delete(runFile);
    return Finish();
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
    // The idle timeout is left at its default (60 min), as deployed: one of 5 s, as the benchmark had before, falls due
    // too soon to be held for its cancel (HeldSchedules.StoreLead, 5 s), so every release stored a timer and every
    // re-use deleted it.
    ["Scheduler:ClusterCheckinInterval"] = "00:00:02",
    ["Cloud:Simulated:ProvisionDelay"] = "00:00:00",
    ["Cloud:Simulated:TrustDelay"] = "00:00:00",
    ["Cloud:Simulated:DeleteDelay"] = "00:00:00",
}).ToList();

// The holds' pools, the pools section's (one, and many with two hot workers each) and the pool-size section's (none hot
// at start: the section sizes them with SetPoolSize), configured only for a run that has those sections.
void AddPool(string pool, int hotTarget, int maxWorkers)
{
    settings.Add(new($"Pools:{pool}:Image", "bench-image"));
    settings.Add(new($"Pools:{pool}:HotTarget", hotTarget.ToString()));
    settings.Add(new($"Pools:{pool}:MaxWorkers", maxWorkers.ToString()));
}

if (!profileOnly && Wanted("lifecycle"))
{
    AddPool(BenchPlan.HoldPool, BenchPlan.HoldPoolHotTarget, 5000);
    AddPool(BenchPlan.SustainPool, BenchPlan.HoldPoolHotTarget, 5000);
}

if (!profileOnly && Wanted("pools"))
{
    AddPool(BenchPlan.OnePool, BenchPlan.OnePoolHotTarget, 1000);
    for (var n = 0; n < plan.PoolsCount; n++)
    {
        AddPool(BenchPlan.ManyPool(n), 2, 100);
    }
}

if (!profileOnly && Wanted("pool-size"))
{
    foreach (var size in plan.PoolSizes)
    {
        AddPool(BenchPlan.SizePool(size), 0, size + 2 * plan.PoolSizeInstances);
    }
}

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
    // Every LeaseSaga copy running (scale-out adds some and pool-size stops them again).
    var leaseSagas = new List<Service> { leaseSaga };
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
    var bus = client.Services.GetRequiredService<IBus>();
    var load = new LeaseLoad(bus, book);

    // Workers of these pools in these states, from the services' own table (every pool name is the bench's: no quoting
    // needed).
    async Task<int> CountWorkersAsync(IEnumerable<string> pools, params string[] states)
        => int.Parse(await database.ScalarAsync(
            $"SELECT count(*) FROM workers WHERE \"Pool\" IN ({string.Join(", ", pools.Select(p => $"'{p}'"))}) "
            + $"AND \"CurrentState\" IN ({string.Join(", ", states.Select(s => $"'{s}'"))})"));

    async Task WaitForHotWorkersAsync(string pool, int count, params string[] morePools)
    {
        string[] pools = [pool, .. morePools];
        await RawBroker.WaitForAsync(
            () => CountWorkersAsync(pools, "Ready").GetAwaiter().GetResult() >= count,
            TimeSpan.FromSeconds(240),
            $"{count} hot workers in {string.Join(", ", pools.Take(3))}"
            + $"{(pools.Length > 3 ? $" and {pools.Length - 3} more pools" : "")}",
            pollMilliseconds: 200);
    }

    // Waits (at most a minute) until no message is queued, so one section's backlog is not measured in the next.
    async Task DrainAsync(string before)
    {
        try
        {
            await RawBroker.WaitForAsync(
                () => vhost.QueueDepthsAsync().GetAwaiter().GetResult()
                .Where(q => !q.Key.EndsWith("_error", StringComparison.Ordinal)).Sum(q => q.Value) == 0,
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

    // Every running LeaseSaga copy's CPU time so far, summed.
    long LeaseSagaCpu() => leaseSagas.Sum(x => x.CpuMilliseconds());

    // Optimistic-concurrency conflicts so far, summed over every running LeaseSaga copy's /metrics.
    async Task<double> ConflictsAsync()
    {
        var total = 0.0;
        foreach (var copy in leaseSagas)
        {
            total += await PrometheusCounter.SumAsync(copy, PrometheusCounter.SagaConflicts);
        }

        return total;
    }

    // What the broker and the database alone took: the most the machine could do even if the services took no CPU at
    // all. Said only when both run on this machine (neither took nothing).
    void ServersAlone(string run, string unit, Dictionary<string, long> before, Dictionary<string, long> after,
        int units, string? goal)
    {
        var rabbitMq = after["RabbitMQ"] - before["RabbitMQ"];
        var postgres = after["PostgreSQL"] - before["PostgreSQL"];
        var servers = (rabbitMq + postgres) / (double)Math.Max(1, units);
        if (rabbitMq > 0 && postgres > 0)
        {
            report.Note($"RabbitMQ and PostgreSQL alone took {servers:0.0} ms of CPU per {unit} ({run}): "
                        + $"on {Environment.ProcessorCount} cores, "
                        + $"at most {Environment.ProcessorCount * 1000 / servers:0} {unit}s a second even if the "
                        + "services took none"
                        + (goal is null ? "." : $"; {goal}."));
        }
    }

    // Services that just started still compile their code paths as they first run them (the JIT): a closed loop of
    // whole lifecycles first, so the figures below are of services that have run, as in production.
    async Task WarmUpAsync(string label, string prefix, TimeSpan? length = null)
    {
        var warmup = length ?? plan.Warmup;
        Say($"{label}: closed-loop lifecycles for {warmup.TotalSeconds:0} s");
        Say($"{label}: " + Report.Describe(await load.ClosedLoopAsync(BenchPlan.CyclePool, 8, warmup, prefix)));
    }

    // One more LeaseSaga on the same database and queues, warmed up as the first was (for as long as the plan gives a
    // copy).
    async Task AddLeaseSagaAsync()
    {
        var name = $"LeaseSaga-{leaseSagas.Count + 1}";
        Say($"starting {name}");
        var copy = Service.Start("LeaseSaga", name, settings, logs);
        services.Add(copy);
        leaseSagas.Add(copy);
        await copy.WaitUntilReadyAsync(TimeSpan.FromSeconds(120));
        await WarmUpAsync($"{name} warm-up", $"{name.ToLowerInvariant()}-warmup", plan.CopyWarmup);
    }

    // The last copy added stops (killed, as a container may be; every queue is empty by then).
    async Task RemoveLeaseSagaAsync()
    {
        var copy = leaseSagas[^1];
        Say($"stopping {copy.Name}");
        leaseSagas.Remove(copy);
        services.Remove(copy);
        await copy.DisposeAsync();
    }

    await WaitForPoolsAsync("the warm-up");
    await WarmUpAsync("warm-up", "warmup");

    // 3. Hot-pool latency: every lease from a new instance, so it needs a hot worker and a trust step. At the first
    // rate the broker's deliveries are counted too, up to the pool back at its hot target and every queue empty.
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
        var countDeliveries = rate == plan.Rates[0];
        if (countDeliveries)
        {
            await Task.Delay(plan.StatsSettle);
        }

        var deliveredBefore = countDeliveries ? await vhost.DeliveredAsync() : 0;
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
            ServersAlone(run, "hot lease", cpuBefore, cpuAfter, result.Granted,
                $"the goal is {rate} a second, each within {Report.HotP99GoalMs:0} ms");
        }

        report.Note($"LeaseSaga's busiest consumers during hot leases at {rate}/s (MassTransit's consume timings): "
                    + string.Join(", ",
                        ConsumeTimings.Between(timingsBefore, await ConsumeTimings.ReadAsync(leaseSaga))));
        Say(Report.Describe(result));
        if (countDeliveries)
        {
            // The replacements, each started, provisioned and given its timer, belong to the hot leases too.
            await WaitForHotWorkersAsync(BenchPlan.HotPool, plan.HotTarget);
            await DrainAsync("the end of the count of deliveries per hot lease");
            await Task.Delay(plan.StatsSettle);
            var perLease = (await vhost.DeliveredAsync() - deliveredBefore) / (double)Math.Max(1, result.Granted);
            report.HotDeliveries(rate, perLease, result.Granted);
            Say($"{perLease:0.0} deliveries per hot lease");
        }
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
        await Task.Delay(TimeSpan.FromSeconds(1)); // the warm-up releases reach the pool; not a synchronisation of the
                                                   // result
        Say($"re-use leases at {rate}/s for {plan.Latency.TotalSeconds:0} s");
        var result = lowerReuse = await load.OpenLoopAsync(BenchPlan.ReusePool, rate, plan.Latency,
            n => $"reuse-{rate}-{n % rate:000}");
        report.Latency("re-use", rate, result);
        Say(Report.Describe(result));
    }

    // The closed loop of lifecycles, with where its cost goes: messages, commits, rows written, conflicts and CPU per
    // lifecycle. Commits are counted only when asked (the ceiling run): they need PostgreSQL's statistics settled, 5 s
    // more.
    async Task<ClosedLoopProfile> ProfiledClosedLoopAsync(string prefix, string run, bool countCommits)
    {
        await Task.Delay(plan.StatsSettle);
        var deliveredBefore = await vhost.DeliveredAsync();
        var queuesBefore = await vhost.DeliveredByQueueAsync();
        var tablesBefore = await database.RowWritesByTableAsync();
        var commitsBefore = await database.CommitsAsync();
        var transactionBefore = await database.TransactionIdAsync();
        var conflictsBefore = await ConflictsAsync();
        var cpuBefore = CpuByProcess();
        Say($"{run}: {plan.ClosedLoopInstances} instances in a closed loop for {plan.Closed.TotalSeconds:0} s");
        var result = await load.ClosedLoopAsync(BenchPlan.CyclePool, plan.ClosedLoopInstances, plan.Closed, prefix);
        var writes = (await database.TransactionIdAsync() - transactionBefore - 1)
            / (double)Math.Max(1, result.Granted);
        var conflicts = (await ConflictsAsync() - conflictsBefore) / Math.Max(1, result.Granted);
        Say(Report.Describe(result)
            + $"; {conflicts:0.000} conflicts and {writes:0.00} writing transactions per lifecycle");
        await Task.Delay(plan.StatsSettle);
        var messages = (await vhost.DeliveredAsync() - deliveredBefore) / (double)Math.Max(1, result.Granted);
        Say($"{messages:0.0} messages delivered per lifecycle");
        report.Profile(run, "deliveries per lifecycle by queue",
            PerUnit(queuesBefore, await vhost.DeliveredByQueueAsync(), result.Granted));
        var cpuAfter = CpuByProcess();
        report.Profile(run, "CPU ms per lifecycle by process", PerUnit(cpuBefore, cpuAfter, result.Granted));
        ServersAlone(run, "lifecycle", cpuBefore, cpuAfter, result.Granted,
            double.IsNaN(rawLifecycles) ? null
            : $"the ≥ {Report.RatioGoal:P0} goal needs {Report.RatioGoal * rawLifecycles:0} a second");
        var commits = double.NaN;
        if (countCommits)
        {
            // A PostgreSQL backend that went idle reports its last second's counts only after 10 s.
            await Task.Delay(plan.DatabaseStatsSettle - plan.StatsSettle);
            commits = (await database.CommitsAsync() - commitsBefore) / (double)Math.Max(1, result.Granted);
            Say($"{commits:0.0} database commits per lifecycle");
        }

        report.Profile(run, "rows written per lifecycle by table",
            PerUnit(tablesBefore, await database.RowWritesByTableAsync(), result.Granted));
        report.Note($"optimistic-concurrency conflicts per lifecycle ({run}): {conflicts:0.000}"
            + (countCommits ? $"; database commits per lifecycle: {commits:0.0}" : ""));
        return new ClosedLoopProfile(result, messages, commits, writes, conflicts);
    }

    // 4. Lifecycle throughput: closed loop to find the ceiling (and count messages per lifecycle), then open-loop
    // holds. Scale-out compares with the closed loop: `--only scale-out` runs both (without the holds).
    ClosedLoopProfile? ceiling = null;
    if (profileOnly || Wanted("lifecycle") || Wanted("scale-out"))
    {
        // The earlier sections' tail (the hot pool refilling, the released workers' timers) must not be counted against
        // this run.
        await WaitForPoolsAsync("the lifecycle run");
        ceiling = await ProfiledClosedLoopAsync("cycle", "closed-loop run", countCommits: true);
        if (profileOnly)
        {
            report.Lifecycle(ceiling, null, rawLifecycles, holdsRun: false);
            await client.StopAsync();
            return Finish();
        }
    }

    // The holds: first at the goal's rate (250/s in the full plan) on a pool of its own; if that does not hold, at
    // shares of the closed-loop ceiling below it, on another pool, until one holds (the sustained throughput). Neither
    // is the closed loop's pool, so that the instances a hold adds do not weigh on the scale-out runs.
    HoldResult? held = null;
    if (Wanted("lifecycle"))
    {
        var attempts = new List<(double Rate, string Pool, bool GoalRate)>
        {
            (plan.HoldRate, BenchPlan.HoldPool, true),
        };
        attempts.AddRange(plan.HoldShares.Select(share =>
            (Math.Max(1, Math.Floor(ceiling!.Result.CyclesPerSecond * share)), BenchPlan.SustainPool, false)));
        foreach (var (rate, pool, goalRate) in attempts)
        {
            if (held is not null || (!goalRate && rate >= plan.HoldRate))
            {
                continue;
            }

            if (!TimeLeft($"the lifecycle hold at {rate:0}/s"))
            {
                break;
            }

            // A rate that did not hold leaves a backlog: the next, lower one must not start behind it.
            await DrainAsync($"the hold at {rate}/s");
            var instances = HoldResult.Instances(rate, plan.ClosedLoopInstances,
                goalRate ? HoldResult.GoalRateSpacing : null);
            Say($"holding {rate}/s: warming {instances} instances");
            Say("warm-up: " + Report.Describe(await HoldResult.WarmAsync(load, pool, rate, instances)));
            await WaitForHotWorkersAsync(pool, BenchPlan.HoldPoolHotTarget);
            await DrainAsync($"the hold at {rate}/s");
            Say($"holding {rate}/s for {plan.Hold.TotalSeconds:0} s on {pool} ({instances} instances)");
            var hold = await HoldResult.RunAsync(load, vhost, pool, rate, plan.Hold, instances);
            Say(hold.Describe());
            report.Hold(hold, goalRate);
            if (hold.Held)
            {
                held = hold;
            }
        }
    }

    if (ceiling is not null)
    {
        report.Lifecycle(ceiling, held, rawLifecycles, holdsRun: Wanted("lifecycle"));
    }

    // 5. One pool against many at the same offered rate: an open loop of re-use lifecycles over the same number of
    // instances, all in one pool, then spread evenly over the many (each instance first given an idle worker of its
    // own).
    if (Wanted("pools"))
    {
        var manyPools = Enumerable.Range(0, plan.PoolsCount).Select(BenchPlan.ManyPool).ToArray();
        var hotWorkers = BenchPlan.OnePoolHotTarget + 2 * plan.PoolsCount;
        var instances = (int)Math.Ceiling(HoldResult.Instances(plan.PoolsRate,
            plan.ClosedLoopInstances) / (double)plan.PoolsCount) * plan.PoolsCount;
        foreach (var pools in new[] { 1, plan.PoolsCount })
        {
            if (!TimeLeft($"the pools run with {pools} pools"))
            {
                continue;
            }

            string PoolOf(int n) => pools == 1 ? BenchPlan.OnePool : manyPools[n % instances % pools];
            string InstanceOf(int n) => $"pools-{pools}-{n % instances:000}";
            await WaitForHotWorkersAsync(BenchPlan.OnePool, hotWorkers, manyPools);
            await DrainAsync($"the pools run with {pools} pools");
            Say($"pools: warming {instances} instances in {pools} pools");
            Say("warm-up: " + Report.Describe(await load.OpenLoopAsync(
                BenchPlan.OnePool, plan.PoolsRate, TimeSpan.FromSeconds(instances / (double)plan.PoolsRate), InstanceOf,
                PoolOf)));
            await WaitForHotWorkersAsync(BenchPlan.OnePool, hotWorkers, manyPools);
            await DrainAsync($"the pools run with {pools} pools");
            Say($"pools: {plan.PoolsRate}/s over {instances} instances in {pools} pools "
                + $"for {plan.PoolsRun.TotalSeconds:0} s");
            var cpuBefore = LeaseSagaCpu();
            var result = await load.OpenLoopAsync(BenchPlan.OnePool, plan.PoolsRate, plan.PoolsRun, InstanceOf, PoolOf);
            report.Pools(pools, instances, plan.PoolsRate, result,
                (LeaseSagaCpu() - cpuBefore) / (double)Math.Max(1, result.Granted));
            Say(Report.Describe(result));
        }
    }

    // Footprint after the load.
    foreach (var service in services)
    {
        report.Footprint(service.Name, service.Memory(), service.ReadyAfter);
    }

    // 6. Scale-out: more LeaseSaga copies on the same database and queues, each warmed up, the same closed loop again.
    if (Wanted("scale-out") && ceiling is not null)
    {
        var runs = new List<(int Copies, LoadResult Result, double? Conflicts)> { (1, ceiling.Result,
            ceiling.Conflicts) };
        foreach (var copies in plan.ScaleOutCopies)
        {
            if (!TimeLeft($"scale-out to {copies} LeaseSaga", reserve: TimeSpan.FromMinutes(1)))
            {
                break;
            }

            await DrainAsync($"scale-out to {copies} LeaseSaga");
            while (leaseSagas.Count < copies)
            {
                await AddLeaseSagaAsync();
            }

            await DrainAsync($"the scale-out run with {copies} LeaseSaga");
            var scaled = await ProfiledClosedLoopAsync($"scaled-{copies}", $"scale-out run, {copies} LeaseSaga",
                countCommits: false);
            runs.Add((copies, scaled.Result, scaled.Conflicts));
            var newest = leaseSagas[^1];
            report.Footprint(newest.Name + " (joins a migrated database)", newest.Memory(), newest.ReadyAfter);
        }

        report.ScaleOut(runs);
    }

    // 7. Pool size: CPU per lifecycle and p99 of re-use lifecycles in pools of a few, some hundred and some thousand
    // live workers, with two LeaseSaga copies and then one. Each pool is filled once through the public contract:
    // SetPoolSize to its size less the instances of the run (its configured hot target is 0), then each instance leases
    // once and releases, keeping a worker idle for itself (the pool refills). Run last: several thousand workers in the
    // database should weigh on no other section.
    if (Wanted("pool-size") && TimeLeft("pool size", reserve: TimeSpan.FromMinutes(1)))
    {
        while (leaseSagas.Count > 2)
        {
            await DrainAsync("stopping a LeaseSaga");
            await RemoveLeaseSagaAsync();
        }

        if (leaseSagas.Count < 2)
        {
            await AddLeaseSagaAsync();
        }

        if (await FillSizePoolsAsync() is { } ready)
        {
            await MeasurePoolSizesAsync(ready);
        }
    }

    // Hot workers in each size's pool, bounded by the plan's deadline and by the budget (less what the runs themselves
    // take): a pool still filling would be measured with the filling, so past that the runs are not made (null).
    async Task<Dictionary<int, int>?> FillSizePoolsAsync()
    {
        var k = plan.PoolSizeInstances;
        var hot = plan.PoolSizes.ToDictionary(size => size, size => size - k);
        foreach (var size in plan.PoolSizes)
        {
            await bus.Publish(new SetPoolSize(BenchPlan.SizePool(size), hot[size], size + 2 * k));
        }

        var runsTake = TimeSpan.FromSeconds(plan.PoolSizes.Length * 2 * (plan.PoolSizeRun.TotalSeconds + 10) + 30);
        var deadline = TimeSpan.FromTicks(Math.Min(plan.PopulateDeadline.Ticks,
            (budget - clock.Elapsed - runsTake).Ticks));
        Say($"pool size: {hot.Values.Sum()} hot workers to provision in {plan.PoolSizes.Length} pools (at "
            + $"most {deadline.TotalSeconds:0} s)");
        var filling = Stopwatch.StartNew();
        var ready = new Dictionary<int, int>();
        var lastSaid = TimeSpan.Zero;
        while (true)
        {
            foreach (var size in plan.PoolSizes)
            {
                ready[size] = await CountWorkersAsync([BenchPlan.SizePool(size)], "Ready");
            }

            if (plan.PoolSizes.All(size => ready[size] >= hot[size]) || filling.Elapsed > deadline)
            {
                break;
            }

            if (filling.Elapsed - lastSaid >= TimeSpan.FromSeconds(15))
            {
                lastSaid = filling.Elapsed;
                Say($"pool size: {ready.Values.Sum()} of {hot.Values.Sum()} hot workers "
                    + $"after {filling.Elapsed.TotalSeconds:0} s");
            }

            await Task.Delay(1000);
        }

        var provisioned = $"{ready.Values.Sum()} of {hot.Values.Sum()} hot workers provisioned "
            + $"in {filling.Elapsed.TotalSeconds:0} s";
        Say($"pool size: {provisioned}");
        report.Note($"pool size: {provisioned} ({ready.Values.Sum() / filling.Elapsed.TotalSeconds:0} a second) "
            + $"with {leaseSagas.Count} LeaseSaga, through SetPoolSize.");
        if (plan.PoolSizes.Any(size => ready[size] < hot[size]))
        {
            report.PoolSizeNotRun($"{provisioned}, all the time there was");
            return null;
        }

        return ready;
    }

    async Task MeasurePoolSizesAsync(Dictionary<int, int> ready)
    {
        var k = plan.PoolSizeInstances;
        foreach (var size in plan.PoolSizes)
        {
            // One lease per instance, each taking a hot worker and a trust step, released: then every lifecycle is a
            // re-use.
            Say($"pool size {size}: {k} instances lease once: " + Report.Describe(await load.OpenLoopAsync(
                BenchPlan.SizePool(size), k, TimeSpan.FromSeconds(1), n => $"size-{size}-{n:000}")));
        }

        foreach (var size in plan.PoolSizes)
        {
            await WaitForHotWorkersAsync(BenchPlan.SizePool(size), ready[size]);
        }

        var sized = new List<PoolSizeRun>();
        foreach (var copies in new[] { 2, 1 })
        {
            while (leaseSagas.Count > copies)
            {
                await DrainAsync("stopping a LeaseSaga");
                await RemoveLeaseSagaAsync();
            }

            foreach (var size in plan.PoolSizes)
            {
                if (!TimeLeft($"pool size {size} with {copies} LeaseSaga"))
                {
                    continue;
                }

                var pool = BenchPlan.SizePool(size);
                await DrainAsync($"pool size {size} with {copies} LeaseSaga");
                Say($"pool size {size} with {copies} LeaseSaga: {k} instances in a closed loop "
                    + $"for {plan.PoolSizeRun.TotalSeconds:0} s, "
                    + $"pausing {plan.PoolSizePause.TotalMilliseconds:0} ms after each release");
                var leaseSagaBefore = LeaseSagaCpu();
                var databaseBefore = ProcessCpu.PostgresBackends(database.Name);
                var machineBefore = ProcessCpu.MachineBusyMilliseconds();
                var result = await load.ClosedLoopAsync(pool, k, plan.PoolSizeRun, $"size-{size}", plan.PoolSizePause);
                var lifecycles = (double)Math.Max(1, result.Granted);
                var leaseSagaMs = (LeaseSagaCpu() - leaseSagaBefore) / lifecycles;
                var databaseMs = ProcessCpu.Between(databaseBefore,
                    ProcessCpu.PostgresBackends(database.Name)) / lifecycles;
                var machineMs = (ProcessCpu.MachineBusyMilliseconds() - machineBefore) / lifecycles;
                var live = await CountWorkersAsync([pool], "Ready", "Trusting", "Leased", "Idle");
                Say($"{live} live workers: " + Report.Describe(result)
                    + $"; CPU ms per lifecycle LeaseSaga {leaseSagaMs:0.0}, its database {databaseMs:0.0}, "
                    + $"machine {machineMs:0.0}");
                sized.Add(new PoolSizeRun(size, live, copies, k, plan.PoolSizePause, result, leaseSagaMs, databaseMs,
                    machineMs));
            }
        }

        foreach (var run in sized.OrderBy(r => r.Copies).ThenBy(r => r.Size))
        {
            report.PoolSize(run);
        }

        foreach (var copies in new[] { 1, 2 })
        {
            var small = sized.FirstOrDefault(r => r.Copies == copies && r.Size == plan.PoolSizes[0]);
            var large = sized.FirstOrDefault(r => r.Copies == copies && r.Size == plan.PoolSizes[^1]);
            if (small is not null && large is not null)
            {
                report.PoolSizeGoal(small, large);
            }
        }
    }

    var errors = (await vhost.QueueDepthsAsync()).Where(q => q.Key.EndsWith("_error", StringComparison.Ordinal))
        .Sum(q => q.Value);
    report.Errors(errors);
    foreach (var sample in errors > 0 ? await vhost.ErrorSamplesAsync() : [])
    {
        report.Note($"in an _error queue at the end: {sample}");
    }

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
