using System.Diagnostics;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>Waits on a condition with a deadline (never a bare sleep): polls until true, fails with a description when
/// time runs out.</summary>
public static class Eventually
{
    public static async Task True(Func<Task<bool>> condition, TimeSpan deadline, string what,
        Func<string>? diagnostics = null)
    {
        // A monotonic clock: a wall-clock step (NTP on a fresh machine) must not cut the deadline short.
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > deadline)
            {
                throw new TimeoutException($"not within {deadline.TotalSeconds:0.#} s: "
                    + $"{what}{(diagnostics is null ? "" : "\n" + diagnostics())}");
            }

            await Task.Delay(100);
        }
    }

    public static Task True(Func<bool> condition, TimeSpan deadline, string what, Func<string>? diagnostics = null)
        => True(() => Task.FromResult(condition()), deadline, what, diagnostics);
}
