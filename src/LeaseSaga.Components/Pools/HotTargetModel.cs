namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// The demand-driven hot target. Each lease that re-use cannot serve takes a hot worker, whose replacement takes one
/// provisioning time T; with leases arriving at rate λ, the replacements under way at any moment are Poisson(λ·T)
/// (an M/G/∞ queue, whatever the distribution of T), so a lease finds the pool empty, and waits for a VM, when H or
/// more are under way: the target is the smallest H with P(Poisson(λ·T) ≥ H) ≤ the wanted probability.
/// </summary>
public static class HotTargetModel
{
    /// <summary>
    /// The smallest hot target that keeps the chance of a lease waiting for a VM at or below
    /// <paramref name="waitProbability"/>.
    /// </summary>
    public static int Required(double arrivalsPerMinute, TimeSpan provisioningTime, double waitProbability, int limit)
    {
        var mean = Math.Max(0, arrivalsPerMinute) * Math.Max(0, provisioningTime.TotalMinutes);
        if (mean == 0)
        {
            return 0;
        }

        // P(N ≥ h) = 1 − P(N ≤ h − 1): add the terms in log space, which stay finite for any mean.
        var logTerm = -mean;
        var below = 0.0;
        for (var h = 0; h < limit; h++)
        {
            if (1 - below <= waitProbability)
            {
                return h;
            }

            below += Math.Exp(logTerm);
            logTerm += Math.Log(mean) - Math.Log(h + 1);
        }

        return limit;
    }

    /// <summary>P(Poisson(mean) ≥ h): the chance a lease waits with hot target <paramref name="h"/>.</summary>
    public static double WaitProbability(double arrivalsPerMinute, TimeSpan provisioningTime, int h)
    {
        var mean = Math.Max(0, arrivalsPerMinute) * Math.Max(0, provisioningTime.TotalMinutes);
        var logTerm = -mean;
        var below = 0.0;
        for (var k = 0; k < h; k++)
        {
            below += Math.Exp(logTerm);
            logTerm += Math.Log(mean) - Math.Log(k + 1);
        }

        return Math.Clamp(1 - below, 0, 1);
    }

    /// <summary>
    /// The target to set now: up to what demand needs at once (a lease that waits costs minutes), down by at most a
    /// tenth (at least one) per evaluation, so a lull between bursts does not delete VMs the next burst needs; within
    /// bounds.
    /// </summary>
    public static int Next(int current, int required, int minHot, int maxHot)
    {
        var step = Math.Max(1, current / 10);
        var next = required >= current ? required : Math.Max(required, current - step);
        return Math.Clamp(next, minHot, maxHot);
    }
}
