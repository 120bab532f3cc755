using System.Globalization;
using System.Text;

namespace DynamicWorkers.Simulator;

/// <summary>The table of every strategy, whether the adaptive one met the goal, and the cost/wait plot.</summary>
public static class Report
{
    static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>
    /// The goal: adaptive reaches the p95 time to lease of the best fixed target with at most 0.8 times its idle
    /// VM-hours, or lies below the fixed targets' cost/wait curve (the line between the two fixed targets around its
    /// cost).
    /// </summary>
    public static (bool Met, string Why) Goal(IReadOnlyList<DayResult> fixedTargets, DayResult adaptive)
    {
        var best = fixedTargets.OrderBy(r => r.P95).ThenBy(r => r.IdleVmHours).First();
        if (adaptive.P95 <= best.P95 && adaptive.IdleVmHours <= 0.8 * best.IdleVmHours)
        {
            return (true, $"p95 {Minutes(adaptive.P95)} ≤ best fixed ({best.Strategy}) {Minutes(best.P95)} with "
                + $"{adaptive.IdleVmHours / best.IdleVmHours:0.00}× its idle VM-hours");
        }

        var curve = fixedTargets.OrderBy(r => r.IdleVmHours).ToList();
        for (var i = 0; i + 1 < curve.Count; i++)
        {
            var (a, b) = (curve[i], curve[i + 1]);
            if (adaptive.IdleVmHours >= a.IdleVmHours && adaptive.IdleVmHours <= b.IdleVmHours
                && b.IdleVmHours > a.IdleVmHours)
            {
                var t = (adaptive.IdleVmHours - a.IdleVmHours) / (b.IdleVmHours - a.IdleVmHours);
                var onCurve = a.P95.TotalMinutes + t * (b.P95.TotalMinutes - a.P95.TotalMinutes);
                if (adaptive.P95.TotalMinutes < onCurve)
                {
                    return (true, $"below the fixed targets' curve: p95 {Minutes(adaptive.P95)} against {onCurve:0.0} "
                        + $"min at the same idle VM-hours");
                }
            }
        }

        return (false, $"best fixed ({best.Strategy}) has p95 {Minutes(best.P95)} with {best.IdleVmHours:0.0} idle "
            + $"VM-hours; adaptive {Minutes(adaptive.P95)} with {adaptive.IdleVmHours:0.0}");
    }

    public static string Markdown(IReadOnlyList<DayResult> results, string trace, SimulationPlan plan, string svgName,
        TimeSpan took)
    {
        var text = new StringBuilder();
        text.AppendLine("# A simulated day: fixed hot targets against the adaptive one");
        text.AppendLine();
        var provisioning = string.Create(Invariant, $"provisioning times drawn between {plan.ProvisioningMinMinutes:0} "
            + $"and {plan.ProvisioningMaxMinutes:0} minutes");
        var outage = string.Create(Invariant,
            $"the cloud refuses every create for {plan.OutageLength.TotalHours:0.#} h from {plan.OutageStart:hh\\:mm}");
        text.AppendLine(
            string.Create(Invariant, $"Produced by `scripts/simulate.sh` on {DateTime.UtcNow:yyyy-MM-dd HH:mm} "
            + $"UTC in {took.TotalMinutes:0.0} minutes. Trace `{trace}`, {plan.Length.TotalHours:0} h; {provisioning}; "
            + $"{outage}; trust takes 30 s; MaxWorkers {plan.MaxWorkers}; seed {plan.Seed}. The real lease and worker "
            + $"state machines, allocation and pool keeper run on the in-memory bus with SQLite and a virtual clock."));
        text.AppendLine();
        text.AppendLine("| strategy | leases | granted | re-used | waited for a VM | rejected | p50 time to lease | "
            + "p95 time to lease | idle VM-hours | VM-hours | hot buffer lasted into the outage | VMs created |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in results)
        {
            text.AppendLine(Invariant, $"| {r.Strategy} | {r.Leases} | {r.Granted} | {r.Reused} | {r.WaitedForVm} | "
                + $"{r.Rejected} | {Minutes(r.P50)} | {Minutes(r.P95)} | {r.IdleVmHours:0.0} | {r.VmHours:0.0} | "
                + $"{(r.BufferLasted is { } b ? Minutes(b) : "no outage")} | {r.VmsCreated} |");
        }

        var adaptive = results.Where(r => r.Strategy.StartsWith("adaptive", StringComparison.Ordinal)).ToList();
        var fixedTargets = results.Except(adaptive).ToList();
        if (adaptive.Count > 0 && fixedTargets.Count > 0)
        {
            text.AppendLine();
            text.AppendLine("| goal | met | why |");
            text.AppendLine("|---|---|---|");
            foreach (var a in adaptive)
            {
                var (met, why) = Goal(fixedTargets, a);
                text.AppendLine(Invariant, $"| {a.Strategy}: the best fixed target's p95 with ≤ 0.8× its idle "
                    + $"VM-hours, or below the fixed targets' curve | {(met ? "yes" : "**no**")} | {why} |");
            }
        }

        text.AppendLine();
        text.AppendLine(Invariant, $"![p95 time to lease against idle VM-hours]({svgName})");
        return text.ToString();
    }

    /// <summary>p95 time to lease against idle VM-hours: the fixed targets as a curve, each adaptive run as a
    /// point.</summary>
    public static string Svg(IReadOnlyList<DayResult> results)
    {
        const int width = 640, height = 400, left = 70, right = 20, top = 30, bottom = 50;
        var maxX = Math.Max(1, results.Max(r => r.IdleVmHours)) * 1.1;
        var maxY = Math.Max(1, results.Max(r => r.P95.TotalMinutes)) * 1.1;
        double X(double v) => left + v / maxX * (width - left - right);
        double Y(double v) => height - bottom - v / maxY * (height - top - bottom);
        var svg = new StringBuilder();
        svg.AppendLine(Invariant,
            $"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">""");
        svg.AppendLine(Invariant, $"""<rect width="{width}" height="{height}" fill="white"/>""");
        svg.AppendLine(Invariant,
            $"""<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">p95 time to lease against idle VM-hours, one simulated day</text>""");
        svg.AppendLine(Invariant,
            $"""<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>""");
        svg.AppendLine(Invariant,
            $"""<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>""");
        svg.AppendLine(Invariant,
            $"""<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">idle VM-hours (cost)</text>""");
        svg.AppendLine(Invariant,
            $"""<text x="16" y="{(top + height - bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 {(top + height - bottom) / 2})">p95 time to lease (minutes)</text>""");
        for (var i = 0; i <= 4; i++)
        {
            var (vx, vy) = (maxX * i / 4, maxY * i / 4);
            svg.AppendLine(Invariant,
                $"""<text x="{X(vx):0}" y="{height - bottom + 16}" text-anchor="middle">{vx:0}</text>""");
            svg.AppendLine(Invariant, $"""<text x="{left - 6}" y="{Y(vy) + 4:0}" text-anchor="end">{vy:0.#}</text>""");
        }

        var fixedTargets = results.Where(r => !r.Strategy.StartsWith("adaptive", StringComparison.Ordinal))
            .OrderBy(r => r.IdleVmHours).ToList();
        svg.AppendLine(Invariant,
            $"""<polyline fill="none" stroke="#4477aa" stroke-width="2" points="{string.Join(' ', fixedTargets.Select(r => $"{X(r.IdleVmHours):0.#},{Y(r.P95.TotalMinutes):0.#}"))}"/>""");
        foreach (var r in fixedTargets)
        {
            svg.AppendLine(Invariant,
                $"""<circle cx="{X(r.IdleVmHours):0.#}" cy="{Y(r.P95.TotalMinutes):0.#}" r="4" fill="#4477aa"/><text x="{X(r.IdleVmHours) + 6:0.#}" y="{Y(r.P95.TotalMinutes) - 6:0.#}">{r.Strategy}</text>""");
        }

        foreach (var r in results.Except(fixedTargets))
        {
            svg.AppendLine(Invariant,
                $"""<rect x="{X(r.IdleVmHours) - 5:0.#}" y="{Y(r.P95.TotalMinutes) - 5:0.#}" width="10" height="10" fill="#cc3311"/><text x="{X(r.IdleVmHours) + 8:0.#}" y="{Y(r.P95.TotalMinutes) + 16:0.#}" fill="#cc3311">{r.Strategy}</text>""");
        }

        svg.AppendLine("</svg>");
        return svg.ToString();
    }

    static string Minutes(TimeSpan t) => t.TotalMinutes < 1 ? $"{t.TotalSeconds:0} s" : $"{t.TotalMinutes:0.0} min";
}
