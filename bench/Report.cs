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
    const long RssGoalBytes = 150L * 1024 * 1024;
    static readonly TimeSpan ReadyGoal = TimeSpan.FromSeconds(2);

    readonly List<(string Name, string Value)> _facts = [];
    readonly List<string[]> _rows = [];
    readonly List<string> _notes = [];

    public List<string> Failures { get; } = [];

    public void Fact(string name, string value) => _facts.Add((name, value));

    public async Task CollectMachineFactsAsync()
    {
        Fact("date (UTC)", DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture));
        Fact("commit", await GitAsync("describe --always --dirty --abbrev=12"));
        var cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim()
            : null;
        Fact("CPU", $"{cpu ?? RuntimeInformation.ProcessArchitecture.ToString()}, {Environment.ProcessorCount} cores");
        var memory = File.Exists("/proc/meminfo") ? File.ReadLines("/proc/meminfo").First().Split(':', 2)[1].Trim() : "?";
        Fact("memory", memory);
        Fact("OS", RuntimeInformation.OSDescription);
        Fact(".NET", RuntimeInformation.FrameworkDescription);
        Fact("load average at start", LoadAverage());
        Fact("mode", smoke ? "smoke (seconds per section: figures are not meaningful)" : "full");
    }

    public void Raw(double client, double massTransit)
    {
        Row("raw limit", "RabbitMQ.Client publish+consume, persistent 600 B, confirms, 1 durable queue", $"{client:0} msg/s", "", "");
        Row("raw limit", "MassTransit publish+consume, same setup (services' bus config)", $"{massTransit:0} msg/s", "", "");
        Note($"MassTransit reaches {massTransit / client:P0} of the raw client's rate.");
    }

    public void Latency(string kind, int rate, LoadResult result)
    {
        var goal = kind == "hot" && rate == HotGoalRate ? $"p99 ≤ {HotP99GoalMs:0} ms" : "";
        var met = goal.Length == 0 ? "" : Met(result.Clean && result.Percentile(99) <= HotP99GoalMs);
        Row(
            $"{kind} lease latency",
            $"{rate} leases/s open loop, {result.Sent} leases ({result.Reused} re-used, {result.Queued} waited for provisioning)",
            $"p50 {Ms(result.Percentile(50))} / p95 {Ms(result.Percentile(95))} / p99 {Ms(result.Percentile(99))} / max {Ms(result.Max)} ms",
            goal,
            met);
        Check(result, $"{kind} leases at {rate}/s");
    }

    public void NotRun(string kind, int rate, string why)
    {
        var goal = kind == "hot" && rate == HotGoalRate ? $"p99 ≤ {HotP99GoalMs:0} ms" : "";
        Row($"{kind} lease latency", $"{rate} leases/s open loop", $"not run: {why}", goal, goal.Length == 0 ? "" : Met(false));
    }

    public void Hold(HoldResult hold) => Row(
        "lifecycle hold",
        $"{hold.Rate:0} lifecycles/s open loop for {hold.Load.Elapsed.TotalSeconds:0} s",
        $"{(hold.Held ? "held" : "not held")}: p99 {Ms(hold.Load.Percentile(99))} ms, max queue depth {hold.MaxDepthLastThird}, {hold.Load.Rejected + hold.Load.Unanswered} lost, {hold.ErrorMessages} in _error",
        "",
        "");

    public void Lifecycle(LoadResult ceiling, double messagesPerLifecycle, HoldResult? held, double rawClient, bool holdsRun)
    {
        Check(ceiling, "the closed-loop lifecycle run");
        Row("lifecycle ceiling", $"closed loop, {ceiling.Sent} request→grant→release cycles", $"{ceiling.CyclesPerSecond:0} lifecycles/s", "", "");
        Row("messages per lifecycle", "deliveries in the vhost ÷ lifecycles (broker statistics)", $"{messagesPerLifecycle:0.0}", "", "");
        if (!holdsRun)
        {
            return;
        }

        if (held is null)
        {
            Row("sustained lifecycle throughput", "no rate held for the whole hold", "none", $"≥ {RatioGoal:P0} of raw", Met(false));
            return;
        }

        var ratio = messagesPerLifecycle * held.Rate / rawClient;
        Row(
            "sustained lifecycle throughput",
            $"held {held.Load.Elapsed.TotalSeconds:0} s; ratio = {messagesPerLifecycle:0.0} msg × {held.Rate:0}/s ÷ {rawClient:0} raw msg/s",
            $"{held.Rate:0} lifecycles/s = {ratio:P0} of raw",
            $"≥ {RatioGoal:P0} of raw",
            Met(ratio >= RatioGoal));
    }

    public void Footprint(string service, Rss rss, TimeSpan ready)
    {
        Row("footprint", $"{service}: RSS after the load", rss.ToString(), "≤ 150 MB", Met(rss.Total <= RssGoalBytes));
        Row("footprint", $"{service}: process start → /readyz 200", $"{ready.TotalMilliseconds:0} ms", "≤ 2 s", Met(ready <= ReadyGoal));
    }

    public void ScaleOut(LoadResult one, LoadResult two)
    {
        Check(two, "the scale-out run");
        Row("scale-out", "closed-loop lifecycles/s, 1 → 2 LeaseSaga processes", $"{one.CyclesPerSecond:0} → {two.CyclesPerSecond:0} ({two.CyclesPerSecond / one.CyclesPerSecond:0.00}×)", "", "");
    }

    public void Errors(long messages)
    {
        Row("errors", "messages in every _error queue at the end", messages.ToString(CultureInfo.InvariantCulture), "0", Met(messages == 0));
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
    public void Profile(string run, string what, IEnumerable<(string Name, double PerUnit)> items, string format = "0.0")
        => Note($"{what} ({run}): " + string.Join(", ", items.Select(i => $"{i.Name} {i.PerUnit.ToString(format, CultureInfo.InvariantCulture)}")));

    public static string Describe(LoadResult r)
        => $"{r.Sent} sent, {r.Granted} granted ({r.Reused} re-used, {r.Queued} waited), {r.Rejected} rejected, {r.Unanswered} unanswered, "
           + $"{r.CyclesPerSecond:0.0}/s, p50 {Ms(r.Percentile(50))} p99 {Ms(r.Percentile(99))} max {Ms(r.Max)} ms";

    public string Render()
    {
        Fact("load average at end", LoadAverage());
        var text = new StringBuilder();
        text.AppendLine(smoke ? "# Benchmark (smoke run)" : "# Benchmark").AppendLine();
        text.AppendLine("Produced by `scripts/bench.sh` (see the README's Benchmark section). Services run as separate processes on");
        text.AppendLine("RabbitMQ + PostgreSQL with the simulated cloud at zero latency; latencies are measured from each request's");
        text.AppendLine("scheduled send time to the `LeaseGranted` reaching the benchmark's own consumer.").AppendLine();
        text.AppendLine("| fact | value |").AppendLine("|---|---|");
        foreach (var (name, value) in _facts)
        {
            text.AppendLine($"| {name} | {value} |");
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

    void Row(string section, string what, string figure, string goal, string met) => _rows.Add([section, what, figure, goal, met]);

    void Check(LoadResult result, string what)
    {
        if (!result.Clean)
        {
            Failures.Add($"{what}: {result.Rejected} rejected, {result.Unanswered} unanswered of {result.Sent}");
        }
    }

    static string Met(bool met) => met ? "yes" : "**no**";

    static string Ms(double ms) => double.IsNaN(ms) ? "-" : ms.ToString(ms < 10 ? "0.0" : "0", CultureInfo.InvariantCulture);

    static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    static async Task<string> GitAsync(string arguments)
    {
        try
        {
            var info = new ProcessStartInfo("git", arguments) { WorkingDirectory = Paths.RepositoryRoot, RedirectStandardOutput = true, RedirectStandardError = true };
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
