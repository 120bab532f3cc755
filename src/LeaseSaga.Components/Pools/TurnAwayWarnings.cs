using System.Collections.Concurrent;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// A flood against a full waiting line turns leases away by the thousand; ops need to know it happens, not one warning
/// per lease. Per pool, the first turn-away warns at once, later ones within <see cref="Interval"/> are only counted,
/// and the first after it warns again with that count. Each instance still gets its own <c>LeaseRejected</c>.
/// Counts are per process and of decisions: a decision retried after a lost race counts again, and the count after the
/// last warning of a flood is told by the next turn-away, not on its own.
/// </summary>
public sealed class TurnAwayWarnings(TimeProvider clock)
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(30);

    readonly ConcurrentDictionary<string, Window> _pools = new(StringComparer.Ordinal);

    /// <summary>
    /// Counts one turn-away for <paramref name="pool"/>; true when this one should be logged, with how many were
    /// counted but not logged since the last warning.
    /// </summary>
    public bool ShouldWarn(string pool, out int unreported)
    {
        var window = _pools.GetOrAdd(pool, _ => new Window());
        var now = clock.GetUtcNow();
        lock (window)
        {
            if (window.WarnedAt is { } warnedAt && now - warnedAt < Interval)
            {
                window.Unreported++;
                unreported = 0;
                return false;
            }

            unreported = window.Unreported;
            window.Unreported = 0;
            window.WarnedAt = now;
            return true;
        }
    }

    sealed class Window
    {
        public DateTimeOffset? WarnedAt { get; set; }
        public int Unreported { get; set; }
    }
}
