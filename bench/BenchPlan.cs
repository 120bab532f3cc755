using System.Diagnostics;

namespace DynamicWorkers.Bench;

/// <summary>How long each section runs: the full run (at most about 7 minutes plus start-up) or the smoke run (seconds).</summary>
public sealed record BenchPlan(
    TimeSpan Raw,
    TimeSpan Latency,
    int[] Rates,
    int HotTarget,
    TimeSpan Closed,
    int ClosedLoopInstances,
    TimeSpan Hold,
    double[] HoldShares,
    TimeSpan StatsSettle,
    TimeSpan Warmup)
{
    public const string HotPool = "bench-hot";
    public const string ReusePool = "bench-reuse";
    public const string CyclePool = "bench-cycle";

    // The management API samples statistics every 5 s: wait a little longer before reading a delivery count.
    public static readonly BenchPlan Full = new(
        Raw: TimeSpan.FromSeconds(10),
        Latency: TimeSpan.FromSeconds(10),
        Rates: [10, 50, 100],
        HotTarget: 400,
        Closed: TimeSpan.FromSeconds(20),
        ClosedLoopInstances: 32,
        Hold: TimeSpan.FromSeconds(60),
        HoldShares: [0.85, 0.6],
        StatsSettle: TimeSpan.FromSeconds(6),
        Warmup: TimeSpan.FromSeconds(20));

    // Low rates: the smoke run proves every section works end to end, on a CI machine that may be busy.
    public static readonly BenchPlan Smoke = new(
        Raw: TimeSpan.FromSeconds(1),
        Latency: TimeSpan.FromSeconds(1),
        Rates: [5, 10, 20],
        HotTarget: 30,
        Closed: TimeSpan.FromSeconds(2),
        ClosedLoopInstances: 4,
        Hold: TimeSpan.FromSeconds(2),
        HoldShares: [0.5],
        StatsSettle: TimeSpan.FromSeconds(6),
        Warmup: TimeSpan.FromSeconds(1));
}

/// <summary>
/// An open-loop hold at one lifecycle rate. It holds when every lease is granted, p99 stays under a second,
/// no message went to an error queue and the queues stay bounded (in the last third, never more than two
/// seconds' worth of requests waiting).
/// </summary>
public sealed record HoldResult(double Rate, LoadResult Load, long MaxDepthLastThird, long ErrorMessages)
{
    public bool Held => Load.Clean && Load.Percentile(99) <= 1000 && ErrorMessages == 0 && MaxDepthLastThird <= 2 * Rate;

    public string Describe()
        => $"{Rate:0}/s: {(Held ? "held" : "NOT held")}; {Report.Describe(Load)}; max queue depth in the last third {MaxDepthLastThird}; error-queue messages {ErrorMessages}";

    /// <summary>
    /// An instance of the hold asks again every <see cref="InstanceSpacing"/> or more: were its next request due before its
    /// last lifecycle ended (about half a second at the ceiling), it would need a second worker, and the run would measure
    /// provisioning, not lifecycles (a hold at 58/s over 32 instances had 3,373 of 3,480 leases wait for a new VM).
    /// </summary>
    public static readonly TimeSpan InstanceSpacing = TimeSpan.FromSeconds(2);

    public static int Instances(double rate, int atLeast) => Math.Max(atLeast, (int)Math.Ceiling(rate * InstanceSpacing.TotalSeconds));

    static string HoldInstance(double rate, int n) => $"hold-{rate:0}-{n:000}";

    /// <summary>One lease for each instance of the hold, released, so that each holds an idle worker when the hold starts.</summary>
    public static Task<LoadResult> WarmAsync(LeaseLoad load, string pool, double rate, int instances)
        => load.OpenLoopAsync(pool, rate, TimeSpan.FromSeconds(instances / rate), n => HoldInstance(rate, n));

    public static async Task<HoldResult> RunAsync(LeaseLoad load, BenchVirtualHost vhost, string pool, double rate, TimeSpan duration, int instances)
    {
        var started = Stopwatch.GetTimestamp();
        var depths = new List<(TimeSpan At, long Depth)>();
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var queues = await vhost.QueueDepthsAsync();
                depths.Add((Stopwatch.GetElapsedTime(started), queues.Where(q => !q.Key.EndsWith("_error", StringComparison.Ordinal)).Sum(q => q.Value)));
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        });
        var result = await load.OpenLoopAsync(pool, rate, duration, n => HoldInstance(rate, n % instances));
        await stop.CancelAsync();
        await sampler;
        var lastThird = depths.Where(d => d.At >= duration * 2 / 3 && d.At <= duration).Select(d => d.Depth).DefaultIfEmpty(0).Max();
        var errors = (await vhost.QueueDepthsAsync()).Where(q => q.Key.EndsWith("_error", StringComparison.Ordinal)).Sum(q => q.Value);
        return new HoldResult(rate, result, lastThird, errors);
    }
}
