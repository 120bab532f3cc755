using DynamicWorkers.Simulator;

namespace DynamicWorkers.UnitTests.Simulation;

public sealed class DaySimulationTests
{
    static readonly DateTimeOffset Start = SimulationPlan.Start;

    [Fact]
    public void Idle_VM_hours_integrate_the_counts_between_the_moments_they_change()
    {
        var account = new IdleAccount(Start);
        account.Record(Start + TimeSpan.FromHours(1), idle: 4, live: 6);
        account.Record(Start + TimeSpan.FromHours(1.5), idle: 2, live: 2);
        account.Record(Start + TimeSpan.FromHours(3.5), idle: 0, live: 0);

        // Nothing for the first hour, then 4 idle of 6 for half an hour, then 2 of 2 for two hours.
        Assert.Equal(4 * 0.5 + 2 * 2, account.IdleVmHours, 6);
        Assert.Equal(6 * 0.5 + 2 * 2, account.VmHours, 6);
    }

    [Fact]
    public void Percentiles_are_nearest_rank()
    {
        var waits = Enumerable.Range(1, 20).Select(i => TimeSpan.FromSeconds(i)).Reverse().ToList();

        Assert.Equal(TimeSpan.FromSeconds(10), DaySimulation.Percentile(waits, 0.50));
        Assert.Equal(TimeSpan.FromSeconds(19), DaySimulation.Percentile(waits, 0.95));
        Assert.Equal(TimeSpan.Zero, DaySimulation.Percentile([], 0.95));
    }

    [Theory]
    // Matches the best fixed p95 with 0.75× its idle hours: met.
    [InlineData(5.0, 75.0, true)]
    // Matches it with 0.9× its idle hours, but lies below the curve between fixed 4 (50 h, 12 min) and fixed 8 (100 h,
    // 5 min).
    [InlineData(6.0, 90.0, true)]
    // Above the curve and dearer than 0.8×: missed.
    [InlineData(9.0, 90.0, false)]
    public void The_goal_is_the_best_fixed_p95_for_at_most_0_8_of_its_cost_or_a_point_below_the_fixed_curve(
        double p95Minutes, double idleHours, bool met)
    {
        List<DayResult> fixedTargets =
            [Result("fixed 4", 12, 50), Result("fixed 8", 5, 100), Result("fixed 2", 20, 30)];

        Assert.Equal(met, Report.Goal(fixedTargets, Result("adaptive", p95Minutes, idleHours)).Met);
    }

    [Fact]
    public void A_trace_is_read_with_its_defaults_and_a_bad_row_names_its_line()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "# mine\noffset,instance,duration\n00:10:00\n00:05:00,acme,00:30:00\n");
            var trace = DemandTrace.Read(file);
            Assert.Equal([TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(10)], trace.Select(t => t.At));
            Assert.Equal(("acme", TimeSpan.FromMinutes(30)), (trace[0].InstanceId, trace[0].Duration));
            Assert.Equal(TimeSpan.FromMinutes(15), trace[1].Duration);

            File.WriteAllText(file, "00:10:00\nsoon,acme\n");
            Assert.Contains(":2: 'soon'", Assert.Throws<FormatException>(() => DemandTrace.Read(file)).Message);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void The_committed_working_day_has_a_quiet_night_a_busy_day_and_bursts()
    {
        var trace = DemandTrace.Read(Path.Combine(RepositoryFiles.Root, "sim", "traces", "working-day.csv"));
        int Between(double from, double to)
            => trace.Count(t => t.At >= TimeSpan.FromHours(from) && t.At < TimeSpan.FromHours(to));

        Assert.InRange(trace.Count, 700, 1100);
        Assert.True(Between(0, 6) / 6 < Between(9, 10) / 4, "the night is quiet");
        Assert.True(Between(10, 10 + 1.0 / 6) > 2 * Between(9, 9 + 1.0 / 6), "a burst at 10:00");
    }

    /// <summary>The short simulation <c>scripts/test.sh</c> runs: two hours of the working day, one outage, a fixed
    /// target and the adaptive one.</summary>
    [Fact]
    public async Task A_short_day_accounts_for_every_lease_and_a_larger_fixed_target_makes_fewer_leases_wait()
    {
        var trace = DemandTrace.Read(Path.Combine(RepositoryFiles.Root, "sim", "traces", "working-day.csv"))
            .Where(t => t.At >= TimeSpan.FromHours(9) && t.At < TimeSpan.FromHours(11))
            .Select(t => t with { At = t.At - TimeSpan.FromHours(9) })
            .ToList();
        var plan = new SimulationPlan(TimeSpan.FromHours(2), OutageStart: TimeSpan.FromMinutes(90),
            OutageLength: TimeSpan.FromMinutes(20));

        var none = await DaySimulation.RunAsync(trace, plan, PoolStrategy.Fixed(0), CancellationToken.None);
        var eight = await DaySimulation.RunAsync(trace, plan, PoolStrategy.Fixed(8), CancellationToken.None);
        var adaptive = await DaySimulation.RunAsync(trace, plan, new PoolStrategy("adaptive", 0, Adaptive: true),
            CancellationToken.None);

        foreach (var day in new[] { none, eight, adaptive })
        {
            Assert.Equal(trace.Count, day.Leases);
            Assert.True(day.Granted + day.Rejected <= day.Leases && day.WaitedForVm <= day.Granted
                && day.Reused <= day.Granted, day.ToString());
            Assert.True(day.IdleVmHours <= day.VmHours && day.P50 <= day.P95, day.ToString());
            Assert.NotNull(day.BufferLasted);
        }

        // With no hot worker every lease re-use cannot serve waits for a VM, and the pool holds no buffer into the
        // outage.
        Assert.Equal(none.Granted - none.Reused, none.WaitedForVm);
        Assert.Equal(TimeSpan.Zero, none.BufferLasted);
        Assert.True(eight.WaitedForVm < none.WaitedForVm && eight.IdleVmHours > none.IdleVmHours,
            $"{none} against {eight}");
        Assert.True(adaptive.WaitedForVm < none.WaitedForVm, $"{none} against {adaptive}");
    }

    static DayResult Result(string name, double p95Minutes, double idleHours)
        => new(name, 100, 100, 0, 0, 0, TimeSpan.Zero, TimeSpan.FromMinutes(p95Minutes), idleHours, idleHours * 2, null,
            10);
}
