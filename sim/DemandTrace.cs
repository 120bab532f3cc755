using System.Globalization;
using System.Text;

namespace DynamicWorkers.Simulator;

/// <summary>One lease a trace asks for: when (from the trace's start), by which instance, held how long.</summary>
public sealed record TraceLease(TimeSpan At, string InstanceId, TimeSpan Duration);

/// <summary>
/// A demand trace: a CSV file of <c>offset,instance,duration</c> rows (offset and duration as <c>hh:mm:ss</c>; only the
/// offset is required, the instance defaults to one of 50 in turn and the duration to 15 minutes). Lines starting with
/// <c>#</c> are comments.
/// </summary>
public static class DemandTrace
{
    static readonly TimeSpan DefaultDuration = TimeSpan.FromMinutes(15);

    public static IReadOnlyList<TraceLease> Read(string path)
    {
        var leases = new List<TraceLease>();
        foreach (var (line, number) in File.ReadLines(path).Select((l, i) => (l.Trim(), i + 1)))
        {
            if (line.Length == 0 || line.StartsWith('#')
                || line.StartsWith("offset", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            var fields = line.Split(',');
            if (!TimeSpan.TryParse(fields[0], CultureInfo.InvariantCulture, out var at) || at < TimeSpan.Zero)
            {
                throw new FormatException(
                    $"{path}:{number}: '{fields[0]}' is no offset (hh:mm:ss from the trace's start)");
            }

            var instance = fields.Length > 1 && fields[1].Trim().Length > 0
                ? fields[1].Trim() : $"instance-{leases.Count % 50}";
            var duration = DefaultDuration;
            if (fields.Length > 2 && fields[2].Trim().Length > 0 && (
                !TimeSpan.TryParse(fields[2], CultureInfo.InvariantCulture, out duration) || duration <= TimeSpan.Zero))
            {
                throw new FormatException($"{path}:{number}: '{fields[2]}' is no duration (hh:mm:ss)");
            }

            leases.Add(new TraceLease(at, instance, duration));
        }

        return leases.OrderBy(l => l.At).ToList();
    }

    /// <summary>
    /// A working day: a quiet night, a morning ramp, a busy day with two ten-minute bursts, an evening ramp down; 120
    /// instances, a few of them busy; tasks of 12 minutes on average.
    /// </summary>
    public static IReadOnlyList<TraceLease> WorkingDay(int seed)
    {
        var random = new Random(seed);
        const double peak = 5.2;
        var leases = new List<TraceLease>();
        var at = 0.0;
        while (true)
        {
            // Thinning: a Poisson process at the peak rate, each arrival kept with probability rate(t) / peak.
            at += -Math.Log(1 - random.NextDouble()) / peak;
            if (at >= 24 * 60)
            {
                break;
            }

            if (random.NextDouble() * peak > RatePerMinute(at))
            {
                continue;
            }

            var instance = (int)(120 * Math.Pow(random.NextDouble(), 2));
            var minutes = Math.Clamp(-Math.Log(1 - random.NextDouble()) * 12, 1, 90);
            leases.Add(new TraceLease(TimeSpan.FromMinutes(Math.Round(at, 2)), $"instance-{instance}",
                TimeSpan.FromMinutes(Math.Round(minutes, 1))));
        }

        return leases;
    }

    static double RatePerMinute(double minute)
    {
        var hour = minute / 60;
        var rate = hour switch
        {
            < 7 => 0.1,
            < 9 => 0.1 + (hour - 7) / 2 * 1.1,
            < 17 => 1.2,
            < 20 => 1.2 - (hour - 17) / 3 * 1.0,
            _ => 0.1,
        };
        var burst = hour is >= 10 and < 10 + 1.0 / 6 or >= 15 and < 15 + 1.0 / 6 ? 4 : 0;
        return rate + burst;
    }

    public static void Write(string path, IReadOnlyList<TraceLease> leases, string description)
    {
        var text = new StringBuilder();
        text.AppendLine($"# {description}");
        text.AppendLine("offset,instance,duration");
        foreach (var lease in leases)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"{lease.At:hh\\:mm\\:ss},{lease.InstanceId},{lease.Duration:hh\\:mm\\:ss}");
        }

        File.WriteAllText(path, text.ToString());
    }
}
