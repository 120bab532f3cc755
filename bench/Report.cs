using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace DynamicWorkers.Bench;

/// <summary>Collects the figures and renders the one table (markdown, which also reads well on a terminal).</summary>
public sealed class Report(bool smoke)
{
    public const double HotP99GoalMs = 50;

    /// <summary>The offered load the hot-lease goal is set at (leases a second).</summary>
    public const int HotGoalRate = 100;

    public const double RatioGoal = 0.40;

    /// <summary>Closed-loop lifecycles a second.</summary>
    public const double CeilingGoal = 300;

    /// <summary>The rate the lifecycle hold is run at in the full plan, for <see cref="HoldGoalDuration"/>, each lease
    /// within <see cref="HoldP99GoalMs"/>.</summary>
    public const int HoldGoalRate = 250;
    public static readonly TimeSpan HoldGoalDuration = TimeSpan.FromSeconds(60);
    public const double HoldP99GoalMs = 100;

    public const double ScaleOutGoal = 0.95;
    public const double ConflictsGoal = 0.01;
    public const double PoolSizeRatioGoal = 1.25;
    public const double ReuseDeliveriesGoal = 5;
    public const double HotDeliveriesGoal = 10;
    public const double CommitsGoal = 3;
    const long RssGoalBytes = 150L * 1024 * 1024;
    static readonly TimeSpan ReadyGoal = TimeSpan.FromSeconds(2);

    readonly List<(string Name, string Value)> _facts = [];
    readonly List<string[]> _rows = [];
    readonly List<string[]> _goals = [];
    readonly List<string> _notes = [];

    public List<string> Failures { get; } = [];

    public void Fact(string name, string value) => _facts.Add((name, value));

    public async Task CollectMachineFactsAsync()
    {
        Fact("date (UTC)", DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture));
        Fact("commit", await GitAsync("describe --always --dirty --abbrev=12"));
        var cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo")
            .FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;
        Fact("CPU", $"{cpu ?? RuntimeInformation.ProcessArchitecture.ToString()}, {Environment.ProcessorCount} cores");
        var memory = File.Exists("/proc/meminfo") ? File.ReadLines("/proc/meminfo").First().Split(':', 2)[1]
            .Trim() : "?";
        Fact("memory", memory);
        Fact("OS", RuntimeInformation.OSDescription);
        Fact(".NET", RuntimeInformation.FrameworkDescription);
        Fact("load average at start", LoadAverage());
        Fact("mode", smoke ? "smoke (seconds per section: figures are not meaningful)" : "full");
    }

    public void Raw(double client, double massTransit)
    {
        Row("raw limit", "RabbitMQ.Client publish+consume, persistent 600 B, confirms, 1 durable queue",
            $"{client:0} msg/s", "", "");
        Row("raw limit", "MassTransit publish+consume, same setup (services' bus config)", $"{massTransit:0} msg/s",
            "", "");
        Note($"MassTransit reaches {massTransit / client:P0} of the raw client's rate.");
    }

    public void RawLifecycle(RawLifecycleRun run, int loops)
    {
        Row(
            "raw lifecycle",
            $"request → grant → release by hand (RabbitMQ.Client + Npgsql): 3 persistent confirmed messages "
            + "through durable queues and 2 committed transactions "
            + $"(a SKIP LOCKED claim on an indexed table) per lifecycle, {loops} closed loops, {run.Lifecycles} "
            + "lifecycles",
            $"{run.PerSecond:0} lifecycles/s; request → grant p50 {Ms(Stats.Percentile(run.GrantMs, 50))} / "
            + $"p99 {Ms(Stats.Percentile(run.GrantMs, 99))} ms; "
            + $"request → release committed p50 {Ms(Stats.Percentile(run.LifecycleMs, 50))} / "
            + $"p99 {Ms(Stats.Percentile(run.LifecycleMs, 99))} ms",
            "",
            "");
        if (run.Lost > 0)
        {
            Failures.Add($"the raw lifecycle run: {run.Lost} lifecycles unanswered or without a worker");
        }
    }

    /// <summary>Broker deliveries per hot lease: its request, trust step, grant, release, and the pool's replacement of
    /// the worker it took.</summary>
    public void HotDeliveries(int rate, double perLease, int leases) => Row(
        "deliveries per hot lease",
        $"deliveries in the vhost ÷ hot leases (broker statistics): {leases} hot leases at {rate}/s, each released, "
        + "until the pool was back at its hot target, its new workers had their timers and every queue was empty",
        $"{perLease:0.0}",
        $"≤ {HotDeliveriesGoal:0}",
        Met(perLease <= HotDeliveriesGoal));

    public void Latency(string kind, int rate, LoadResult result)
    {
        var goal = kind == "hot" && rate == HotGoalRate ? $"p99 ≤ {HotP99GoalMs:0} ms" : "";
        var met = goal.Length == 0 ? "" : Met(result.Clean && result.Percentile(99) <= HotP99GoalMs);
        Row(
            $"{kind} lease latency",
            $"{rate} leases/s open loop, {result.Sent} leases ({result.Reused} re-used, {result.Queued} waited for "
            + "provisioning)",
            $"p50 {Ms(result.Percentile(50))} / p95 {Ms(result.Percentile(95))} / p99 {Ms(result.Percentile(99))} / "
            + $"max {Ms(result.Max)} ms",
            goal,
            met);
        Check(result, $"{kind} leases at {rate}/s");
    }

    public void NotRun(string kind, int rate, string why)
    {
        var goal = kind == "hot" && rate == HotGoalRate ? $"p99 ≤ {HotP99GoalMs:0} ms" : "";
        Row($"{kind} lease latency", $"{rate} leases/s open loop", $"not run: {why}", goal,
            goal.Length == 0 ? "" : Met(false));
    }

    /// <summary>A hold; the one at the plan's goal rate carries the goal (met only at the full plan's rate and
    /// length).</summary>
    public void Hold(HoldResult hold, bool goalRate)
    {
        var goal = goalRate
            ? $"{HoldGoalRate}/s for {HoldGoalDuration.TotalSeconds:0} s, p99 ≤ {HoldP99GoalMs:0} ms" : "";
        var met = goalRate
            ? Met(hold.Held && hold.Rate >= HoldGoalRate && hold.Planned >= HoldGoalDuration
                && hold.Load.Percentile(99) <= HoldP99GoalMs)
            : "";
        Row(
            "lifecycle hold",
            $"{hold.Rate:0} lifecycles/s open loop for {hold.Planned.TotalSeconds:0} s over {hold.InstanceCount} "
            + $"instances re-using their workers (each asks again every {hold.InstanceCount / hold.Rate:0.#} s)",
            (hold.Held ? "held" : hold.GaveUpAt is { } at
                ? $"not held (gave up after {at.TotalSeconds:0.#} s: over {HoldResult.GiveUpAfter.TotalSeconds:0} s of "
                + "requests unanswered)" : "not held")
            + $": {hold.Load.CyclesPerSecond:0} granted/s, p99 {Ms(hold.Load.Percentile(99))} ms, max queue "
            + $"depth {hold.MaxDepthLastThird}, {hold.Load.Rejected + hold.Load.Unanswered} lost, {hold.ErrorMessages} "
            + "in _error",
            goal,
            met);
    }

    /// <summary>
    /// The closed loop's figures and goals, and the sustained throughput: the held rate ÷ the raw lifecycle rate
    /// (NaN when the raw lifecycle was not run).
    /// </summary>
    public void Lifecycle(ClosedLoopProfile profile, HoldResult? held, double rawLifecycles, bool holdsRun)
    {
        var (ceiling, messagesPerLifecycle, commitsPerLifecycle) = (profile.Result, profile.Messages, profile.Commits);
        Check(ceiling, "the closed-loop lifecycle run");
        Row("lifecycle ceiling", $"closed loop, {ceiling.Sent} request→grant→release cycles",
            $"{ceiling.CyclesPerSecond:0} lifecycles/s", $"≥ {CeilingGoal:0}/s",
            Met(ceiling.CyclesPerSecond >= CeilingGoal));
        Row(
            "messages per lifecycle",
            $"deliveries in the vhost ÷ lifecycles of the closed loop (broker statistics); {ceiling.Reused} "
            + $"of {ceiling.Granted} re-used a worker",
            $"{messagesPerLifecycle:0.0}",
            $"≤ {ReuseDeliveriesGoal:0} per re-use lifecycle",
            Met(messagesPerLifecycle <= ReuseDeliveriesGoal));
        Row(
            "database writes per lifecycle",
            "writing transactions on the PostgreSQL server across the closed loop (transaction ids assigned, "
            + "pg_current_xact_id) ÷ lifecycles: "
            + "every service's and Quartz's (cluster check-ins included), and anything else writing on the server "
            + "meanwhile",
            $"{profile.Writes:0.00}",
            $"≤ {CommitsGoal:0}",
            Met(profile.Writes <= CommitsGoal));
        if (!double.IsNaN(commitsPerLifecycle))
        {
            Row(
                "database commits per lifecycle",
                "committed transactions of the bench database across the closed loop (pg_stat_database.xact_commit) ÷ "
                + "lifecycles: every client's commits, "
                + "read-only ones too, Quartz's and the benchmark's own queries",
                $"{commitsPerLifecycle:0.0}",
                "",
                "");
        }

        if (!holdsRun)
        {
            return;
        }

        if (held is null)
        {
            Row("sustained lifecycle throughput", "no rate held for the whole hold", "none",
                $"≥ {RatioGoal:P0} of raw lifecycle", Met(false));
            return;
        }

        if (double.IsNaN(rawLifecycles))
        {
            Row("sustained lifecycle throughput",
                $"held {held.Planned.TotalSeconds:0} s (raw lifecycle not run: no ratio)",
                $"{held.Rate:0} lifecycles/s", $"≥ {RatioGoal:P0} of raw lifecycle", "");
            return;
        }

        var ratio = held.Rate / rawLifecycles;
        Row(
            "sustained lifecycle throughput",
            $"held {held.Planned.TotalSeconds:0} s; ratio = {held.Rate:0} lifecycles/s held ÷ {rawLifecycles:0} raw "
            + "lifecycles/s",
            $"{held.Rate:0} lifecycles/s = {ratio:P0} of raw lifecycle",
            $"≥ {RatioGoal:P0} of raw lifecycle",
            Met(ratio >= RatioGoal));
    }

    /// <summary>One pool against many at the same offered rate.</summary>
    public void Pools(int pools, int instances, double rate, LoadResult result, double leaseSagaCpuMs)
    {
        Row(
            "pools",
            $"{rate:0} re-use lifecycles/s open loop over {instances} instances "
            + $"in {(pools == 1 ? "1 pool" : $"{pools} pools")}, {result.Sent} leases",
            $"{result.CyclesPerSecond:0} lifecycles/s; p50 {Ms(result.Percentile(50))} / "
            + $"p99 {Ms(result.Percentile(99))} ms; LeaseSaga {leaseSagaCpuMs:0.0} ms CPU per lifecycle",
            "",
            "");
        Check(result, $"the pools run with {pools} pools");
    }

    /// <summary>One pool size with some LeaseSaga copies: CPU per lifecycle and p99 of a closed loop of re-use
    /// lifecycles.</summary>
    public void PoolSize(PoolSizeRun run)
    {
        Row(
            "pool size",
            $"{run.Size} live workers wanted, {run.Live} counted after, {run.Copies} LeaseSaga: closed loop "
            + $"of {run.Instances} instances re-using their workers "
            + $"({run.Pause.TotalMilliseconds:0} ms from a release to the next request), {run.Result.Granted} "
            + $"lifecycles ({run.Result.Reused} re-used)",
            $"CPU ms per lifecycle: LeaseSaga {run.LeaseSagaCpuMs:0.0} + its database's "
            + $"backends {run.DatabaseCpuMs:0.0}, whole machine {run.MachineCpuMs:0.0}; "
            + $"{run.Result.CyclesPerSecond:0} lifecycles/s, p50 {Ms(run.Result.Percentile(50))} / "
            + $"p99 {Ms(run.Result.Percentile(99))} ms",
            "",
            "");
        Check(run.Result, $"the pool-size run at {run.Size} workers with {run.Copies} LeaseSaga");
    }

    /// <summary>
    /// The largest pool's CPU per lifecycle against the smallest's, for one number of copies. Judged on what allocation
    /// costs where it runs (every LeaseSaga copy and the PostgreSQL backends of the bench's database, both isolated
    /// from other work on the machine); the whole machine's ratio is shown too, but other work on a shared machine
    /// counts in it.
    /// </summary>
    public void PoolSizeGoal(PoolSizeRun small, PoolSizeRun large)
    {
        var leaseSaga = large.LeaseSagaCpuMs / small.LeaseSagaCpuMs;
        var allocation = large.AllocationCpuMs / small.AllocationCpuMs;
        var machine = large.MachineCpuMs / small.MachineCpuMs;
        Row(
            "pool size",
            $"CPU per lifecycle at {large.Live} live workers ÷ at {small.Live}, {large.Copies} LeaseSaga: met when "
            + "LeaseSaga's and LeaseSaga's with its database's backends "
            + "both are (the whole machine's is shown, not judged: other work on the machine counts in it)",
            $"LeaseSaga {leaseSaga:0.00}×, LeaseSaga + database {allocation:0.00}×, whole machine {machine:0.00}×",
            $"at {large.Size} ≤ {PoolSizeRatioGoal:0.00}× at {small.Size}",
            Met(leaseSaga <= PoolSizeRatioGoal && allocation <= PoolSizeRatioGoal && large.Live >= large.Size));
    }

    /// <summary>The pool-size section could not fill its pools in the time it had.</summary>
    public void PoolSizeNotRun(string why)
    {
        Row("pool size", $"CPU per lifecycle at the largest pool size ÷ at the smallest", $"not run: {why}",
            $"≤ {PoolSizeRatioGoal:0.00}×", Met(false));
        Failures.Add($"pool size not run: {why}");
    }

    public void Footprint(string service, Rss rss, TimeSpan ready)
    {
        Row("footprint", $"{service}: RSS after the load", rss.ToString(), "≤ 150 MB",
            Met(rss.Total <= RssGoalBytes));
        Row("footprint", $"{service}: process start → /readyz 200", $"{ready.TotalMilliseconds:0} ms", "≤ 2 s",
            Met(ready <= ReadyGoal));
    }

    /// <summary>Closed-loop lifecycles/s and optimistic-concurrency conflicts per lease
    /// (<c>dw_saga_conflicts_total</c>) by number of LeaseSaga copies.</summary>
    public void ScaleOut(IReadOnlyList<(int Copies, LoadResult Result, double? Conflicts)> runs)
    {
        foreach (var (copies, result, _) in runs.Skip(1))
        {
            Check(result, $"the scale-out run with {copies} LeaseSaga");
        }

        var one = runs[0].Result.CyclesPerSecond;
        static string Conflicts(double? c) => c is { } v ? v.ToString("0.000", CultureInfo.InvariantCulture) : "-";
        Row(
            "scale-out",
            $"closed-loop lifecycles/s, {string.Join(" → ", runs.Select(r => r.Copies))} LeaseSaga processes; "
            + "optimistic-concurrency conflicts per lease (dw_saga_conflicts_total summed over every LeaseSaga's "
            + "/metrics ÷ lifecycles)",
            string.Join(" → ", runs.Select(r => $"{r.Result.CyclesPerSecond:0}"
                + $"{(r.Copies == 1 ? "" : $" ({r.Result.CyclesPerSecond / one:0.00}×)")}"))
            + "; conflicts per lease " + string.Join(" / ", runs.Select(r => Conflicts(r.Conflicts))),
            "",
            "");
        if (runs.FirstOrDefault(r => r.Copies == 2) is { Result: not null } two)
        {
            var ratio = two.Result.CyclesPerSecond / one;
            Row(
                "scale-out",
                "2 LeaseSaga processes against 1: closed-loop lifecycles/s, and conflicts per lease with 2",
                $"{ratio:0.00}×, {Conflicts(two.Conflicts)} conflicts per lease",
                $"≥ {ScaleOutGoal:0.00}× with ≤ {ConflictsGoal:0.00} conflicts per lease",
                Met(ratio >= ScaleOutGoal && two.Conflicts is { } c && c <= ConflictsGoal));
        }
    }

    public void Errors(long messages)
    {
        Row("errors", "messages in every _error queue at the end", messages.ToString(CultureInfo.InvariantCulture), "0",
            Met(messages == 0));
        if (messages > 0)
        {
            Failures.Add($"{messages} messages in _error queues");
        }
    }

    public void Note(string note) => _notes.Add(note);

    public void Skipped(string section)
    {
        Row("skipped", section, "not run: past the time budget", "", "");
        Failures.Add($"{section} skipped: past the time budget");
    }

    /// <summary>Where a run's cost goes (per lifecycle, hot lease or message), as one note line.</summary>
    public void Profile(string run, string what, IEnumerable<(string Name, double PerUnit)> items,
        string format = "0.0")
        => Note($"{what} ({run}): "
            + string.Join(", ",
            items.Select(i => $"{i.Name} {i.PerUnit.ToString(format, CultureInfo.InvariantCulture)}")));

    public static string Describe(LoadResult r)
        => $"{r.Sent} sent, {r.Granted} granted ({r.Reused} re-used, {r.Queued} waited), {r.Rejected} "
        + $"rejected, {r.Unanswered} unanswered, "
           + $"{r.CyclesPerSecond:0.0}/s, p50 {Ms(r.Percentile(50))} p99 {Ms(r.Percentile(99))} max {Ms(r.Max)} ms";

    public string Render()
    {
        Fact("load average at end", LoadAverage());
        var text = new StringBuilder();
        text.AppendLine(smoke ? "# Benchmark (smoke run)" : "# Benchmark").AppendLine();
        text.AppendLine("Produced by `scripts/bench.sh` (see docs/benchmark.md). Services run as separate "
            + "processes on");
        text.AppendLine("RabbitMQ + PostgreSQL with the simulated cloud at zero latency; latencies are measured from "
            + "each request's");
        text.AppendLine("scheduled send time to the `LeaseGranted` reaching the benchmark's own consumer.")
            .AppendLine();
        text.AppendLine("| fact | value |").AppendLine("|---|---|");
        foreach (var (name, value) in _facts)
        {
            text.AppendLine($"| {name} | {value} |");
        }

        if (_goals.Count > 0)
        {
            text.AppendLine().AppendLine("Goals (the rows of the table below that have one):").AppendLine();
            text.AppendLine("| section | what | figure | goal | met |").AppendLine("|---|---|---|---|---|");
            foreach (var goal in _goals)
            {
                text.AppendLine("| " + string.Join(" | ", goal) + " |");
            }
        }

        text.AppendLine().AppendLine("| section | what | figure | goal | met |").AppendLine("|---|---|---|---|---|");
        foreach (var row in _rows)
        {
            text.AppendLine("| " + string.Join(" | ", row) + " |");
        }

        foreach (var note in _notes)
        {
            text.AppendLine().Append("- ").AppendLine(note);
        }

        return text.ToString();
    }

    void Row(string section, string what, string figure, string goal, string met)
    {
        _rows.Add([section, what, figure, goal, met]);
        if (met.Length > 0)
        {
            // The goals again in a short table of their own, before the long one.
            _goals.Add([section, what, figure, goal, met]);
        }
    }

    void Check(LoadResult result, string what)
    {
        if (!result.Clean)
        {
            Failures.Add($"{what}: {result.Rejected} rejected, {result.Unanswered} unanswered of {result.Sent}");
        }
    }

    static string Met(bool met) => met ? "yes" : "**no**";

    static string Ms(double ms) => double.IsNaN(ms) ? "-"
        : ms.ToString(ms < 10 ? "0.0" : "0", CultureInfo.InvariantCulture);

    static string LoadAverage() => File.Exists("/proc/loadavg")
        ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    static async Task<string> GitAsync(string arguments)
    {
        try
        {
            var info = new ProcessStartInfo("git", arguments) { WorkingDirectory = Paths.RepositoryRoot,
                RedirectStandardOutput = true, RedirectStandardError = true };
            using var git = Process.Start(info)!;
            var text = (await git.StandardOutput.ReadToEndAsync()).Trim();
            await git.WaitForExitAsync();
            return git.ExitCode == 0 ? text : "?";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "? (git not found)";
        }
    }
}
