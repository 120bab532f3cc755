namespace DynamicWorkers.LeaseSaga.Queries;

/// <summary>One sample of a pool's level: workers by state and leases waiting.</summary>
public sealed record PoolLevelSample(
    DateTimeOffset At,
    IReadOnlyDictionary<string, int> WorkersByState,
    int WaitingLeases);

/// <summary>
/// The leases this process granted in one minute by one path, with the median and 95th percentile of their waits.
/// </summary>
public sealed record LeaseWaitMinute(
    DateTimeOffset Minute,
    string Path,
    int Count,
    double P50Seconds,
    double P95Seconds);

/// <summary>A pool's last hour as <c>/api/history</c> and the dashboard's charts show it.</summary>
public sealed record PoolHistoryView(
    string Pool,
    IReadOnlyList<PoolLevelSample> Levels,
    IReadOnlyList<LeaseWaitMinute> Waits);

/// <summary>
/// The last hour of each pool in memory: levels sampled from the gauges' own query every 15 s, and the waits of the
/// leases this process granted in per-minute buckets. Nothing is stored, so a restart starts an empty hour, and each
/// LeaseSaga copy knows only its own grants.
/// </summary>
public sealed class PoolHistory(TimeProvider clock)
{
    public static readonly TimeSpan Window = TimeSpan.FromHours(1);
    public static readonly TimeSpan SampleInterval = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Waits kept per pool, minute and path; beyond this a new wait replaces a random kept one (a uniform sample).
    /// </summary>
    const int MaxWaitsPerMinute = 1000;

    static readonly TimeSpan Minute = TimeSpan.FromMinutes(1);

    readonly Lock _lock = new();
    readonly Dictionary<string, Queue<PoolLevelSample>> _levels = new(StringComparer.Ordinal);
    readonly Dictionary<(string Pool, DateTimeOffset Minute, string Path), WaitBucket> _waits = [];
    DateTimeOffset _lastSample = DateTimeOffset.MinValue;

    /// <summary>Called on the grant path: one dictionary look-up and a list add under a lock.</summary>
    public void RecordLeaseWait(string pool, string path, TimeSpan wait)
    {
        var now = clock.GetUtcNow();
        var minute = new DateTimeOffset(now.Ticks - (now.Ticks % Minute.Ticks), TimeSpan.Zero);
        lock (_lock)
        {
            if (!_waits.TryGetValue((pool, minute, path), out var bucket))
            {
                _waits[(pool, minute, path)] = bucket = new WaitBucket();
                DropOlderThan(now - Window);
            }

            bucket.Add(wait.TotalSeconds);
        }
    }

    /// <summary>
    /// Keeps <paramref name="pools"/> as a sample when the last one is at least <see cref="SampleInterval"/> old.
    /// </summary>
    public void RecordLevels(
        IEnumerable<(string Pool, IReadOnlyDictionary<string, int> WorkersByState, int WaitingLeases)> pools)
    {
        var now = clock.GetUtcNow();
        lock (_lock)
        {
            if (now - _lastSample < SampleInterval)
            {
                return;
            }

            _lastSample = now;
            foreach (var pool in pools)
            {
                if (!_levels.TryGetValue(pool.Pool, out var samples))
                {
                    _levels[pool.Pool] = samples = new Queue<PoolLevelSample>();
                }

                samples.Enqueue(new PoolLevelSample(now, pool.WorkersByState, pool.WaitingLeases));
            }

            DropOlderThan(now - Window);
        }
    }

    public IReadOnlyList<PoolHistoryView> Read(string? pool)
    {
        var now = clock.GetUtcNow();
        List<(string Pool, PoolLevelSample[] Levels)> levels;
        List<((string Pool, DateTimeOffset Minute, string Path) Key, double[] Waits, int Count)> waits;
        lock (_lock)
        {
            DropOlderThan(now - Window);
            levels = _levels.Where(p => Matches(p.Key)).Select(p => (p.Key, p.Value.ToArray())).ToList();
            waits = _waits.Where(w => Matches(w.Key.Pool))
                .Select(w => (w.Key, w.Value.Waits.ToArray(), w.Value.Count)).ToList();
        }

        // Percentiles are worked out here, off the lock, so a reader never holds up a grant for a sort.
        return levels.Select(l => l.Pool).Union(waits.Select(w => w.Key.Pool)).Order(StringComparer.Ordinal)
            .Select(name => new PoolHistoryView(
                name,
                levels.FirstOrDefault(l => l.Pool == name).Levels ?? [],
                waits.Where(w => w.Key.Pool == name)
                    .OrderBy(w => w.Key.Minute).ThenBy(w => w.Key.Path, StringComparer.Ordinal)
                    .Select(w => new LeaseWaitMinute(w.Key.Minute, w.Key.Path, w.Count,
                        Percentile(w.Waits, 0.5), Percentile(w.Waits, 0.95)))
                    .ToList()))
            .ToList();

        bool Matches(string name) => pool is null || string.Equals(name, pool, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Nearest rank: a wait that really happened, never one interpolated between two.</summary>
    static double Percentile(double[] waits, double share)
    {
        Array.Sort(waits);
        return waits[Math.Clamp((int)Math.Ceiling(share * waits.Length) - 1, 0, waits.Length - 1)];
    }

    void DropOlderThan(DateTimeOffset cutoff)
    {
        foreach (var (pool, samples) in _levels.ToList())
        {
            while (samples.TryPeek(out var oldest) && oldest.At < cutoff)
            {
                samples.Dequeue();
            }

            // A pool removed from configuration leaves the charts once its hour has passed.
            if (samples.Count == 0)
            {
                _levels.Remove(pool);
            }
        }

        // A bucket is dropped once its whole minute is out of the window.
        foreach (var key in _waits.Keys.Where(k => k.Minute + Minute <= cutoff).ToList())
        {
            _waits.Remove(key);
        }
    }

    sealed class WaitBucket
    {
        public List<double> Waits { get; } = [];

        public int Count { get; private set; }

        public void Add(double seconds)
        {
            Count++;
            if (Waits.Count < MaxWaitsPerMinute)
            {
                Waits.Add(seconds);
            }
            else if (Random.Shared.Next(Count) is var slot && slot < MaxWaitsPerMinute)
            {
                Waits[slot] = seconds;
            }
        }
    }
}
