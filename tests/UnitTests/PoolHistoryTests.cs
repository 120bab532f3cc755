using DynamicWorkers.LeaseSaga.Queries;
using Microsoft.Extensions.Time.Testing;

namespace DynamicWorkers.UnitTests;

/// <summary>The dashboard's hour in memory: per-minute wait percentiles by path, level samples, and nothing older than
/// the hour.</summary>
public sealed class PoolHistoryTests
{
    const string Pool = "linux";

    readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero));

    static (string, IReadOnlyDictionary<string, int>, int) Level(int ready, int waiting)
        => (Pool, new Dictionary<string, int> { ["Ready"] = ready }, waiting);

    [Fact]
    public void Waits_are_bucketed_per_minute_and_path_with_their_median_and_95th_percentile()
    {
        var history = new PoolHistory(_clock);
        for (var seconds = 1; seconds <= 20; seconds++)
        {
            history.RecordLeaseWait(Pool, "cold", TimeSpan.FromSeconds(seconds));
        }

        history.RecordLeaseWait(Pool, "hot", TimeSpan.FromSeconds(0.5));
        _clock.Advance(TimeSpan.FromMinutes(1));
        history.RecordLeaseWait(Pool, "hot", TimeSpan.FromSeconds(2));

        var view = Assert.Single(history.Read(Pool));
        Assert.Equal(
            [("cold", 20, 10.0, 19.0, 0), ("hot", 1, 0.5, 0.5, 0), ("hot", 1, 2.0, 2.0, 1)],
            view.Waits.Select(
                w => (w.Path, w.Count, w.P50Seconds, w.P95Seconds, (w.Minute - view.Waits[0].Minute).Minutes)));
        Assert.Empty(history.Read("other-pool"));
    }

    [Fact]
    public void Levels_are_sampled_at_most_every_15_seconds_and_the_hour_slides()
    {
        var history = new PoolHistory(_clock);
        history.RecordLevels([Level(ready: 2, waiting: 0)]);
        history.RecordLeaseWait(Pool, "hot", TimeSpan.FromSeconds(1));
        _clock.Advance(TimeSpan.FromSeconds(5));
        history.RecordLevels([Level(ready: 1, waiting: 3)]);
        _clock.Advance(PoolHistory.SampleInterval);
        history.RecordLevels([Level(ready: 0, waiting: 4)]);

        Assert.Equal([(2, 0), (0, 4)],
            Assert.Single(history.Read(Pool)).Levels.Select(l => (l.WorkersByState["Ready"], l.WaitingLeases)));

        // An hour on, only the last sample is young enough; the grant's minute, begun 20 s before it, is still in part.
        _clock.Advance(PoolHistory.Window);
        var view = Assert.Single(history.Read(Pool));
        Assert.Equal([4], view.Levels.Select(l => l.WaitingLeases));
        Assert.Single(view.Waits);

        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Empty(history.Read(Pool));
    }
}
