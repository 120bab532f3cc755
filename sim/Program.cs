using System.Diagnostics;
using System.Globalization;
using DynamicWorkers.Simulator;

// scripts/simulate.sh [--trace FILE] [--hours N] [--fixed 0,2,4] [--adaptive 0.05] [--outage hh:mm+hh:mm] [--out DIR]
// [--write-trace FILE]
var options = args.Select((a, i) => (a, i)).Where(x => x.a.StartsWith("--", StringComparison.Ordinal))
    .ToDictionary(x => x.a[2..],
        x => x.i + 1 < args.Length && !args[x.i + 1].StartsWith("--", StringComparison.Ordinal) ? args[x.i + 1] : "");
string Option(string name, string fallback)
    => options.TryGetValue(name, out var value) && value.Length > 0 ? value : fallback;

if (options.TryGetValue("write-trace", out var written))
{
    DemandTrace.Write(written, DemandTrace.WorkingDay(seed: 11), "A working day (DemandTrace.WorkingDay, seed 11): "
        + "quiet night, morning ramp, busy day with bursts at 10:00 and 15:00, evening ramp down");
    Console.WriteLine($"wrote {written}");
    return 0;
}

var tracePath = Option("trace", Path.Combine(AppContext.BaseDirectory, "traces", "working-day.csv"));
var outage = Option("outage", "11:00+02:00").Split('+');
var plan = new SimulationPlan(
    TimeSpan.FromHours(double.Parse(Option("hours", "24"), CultureInfo.InvariantCulture)),
    TimeSpan.Parse(outage[0], CultureInfo.InvariantCulture),
    TimeSpan.Parse(outage[1], CultureInfo.InvariantCulture));
var strategies = Option("fixed", "0,2,4,6,8,12,16").Split(',', StringSplitOptions.RemoveEmptyEntries)
    .Select(t => PoolStrategy.Fixed(int.Parse(t, CultureInfo.InvariantCulture)))
    .Concat(Option("adaptive", "0.05").Split(',', StringSplitOptions.RemoveEmptyEntries)
        .Select(p => double.Parse(p, CultureInfo.InvariantCulture))
        .Select(p => new PoolStrategy($"adaptive P(wait) ≤ {p:0.###}", 0, Adaptive: true, TargetWaitProbability: p)))
    .ToList();
var trace = DemandTrace.Read(tracePath);
var output = Option("out", Path.Combine("bench", "results"));
Console.WriteLine($"simulating {trace.Count} leases of {tracePath} over {plan.Length.TotalHours:0.#} h for "
    + $"{strategies.Count} strategies");

var clock = Stopwatch.StartNew();
var results = new List<DayResult>();
foreach (var strategy in strategies)
{
    var started = clock.Elapsed;
    var result = await DaySimulation.RunAsync(trace, plan, strategy, CancellationToken.None);
    results.Add(result);
    Console.WriteLine($"{result.Strategy}: p50 {result.P50}, p95 {result.P95}, waited {result.WaitedForVm}, idle "
        + $"VM-hours {result.IdleVmHours:0.0} ({(clock.Elapsed - started).TotalSeconds:0} s)");
}

Directory.CreateDirectory(output);
File.WriteAllText(Path.Combine(output, "simulation.svg"), Report.Svg(results));
var markdown = Report.Markdown(results, Path.GetFileName(tracePath), plan, "simulation.svg", clock.Elapsed);
File.WriteAllText(Path.Combine(output, "simulation.md"), markdown);
Console.WriteLine(markdown);
return 0;
