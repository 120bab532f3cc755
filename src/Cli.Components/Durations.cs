using System.Globalization;

namespace DynamicWorkers.Cli;

/// <summary>
/// Durations on the command line: <c>500ms</c>, <c>30s</c>, <c>5m</c>, <c>2h</c>, <c>3d</c> or a TimeSpan like
/// <c>01:30:00</c>.
/// </summary>
public static class Durations
{
    public static bool TryParse(string text, out TimeSpan value)
    {
        text = text.Trim();
        (string suffix, Func<double, TimeSpan> unit)[] units =
        [
            ("ms", TimeSpan.FromMilliseconds), ("s", TimeSpan.FromSeconds), ("m", TimeSpan.FromMinutes),
            ("h", TimeSpan.FromHours), ("d", TimeSpan.FromDays),
        ];
        foreach (var (suffix, unit) in units)
        {
            if (text.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)
                && double.TryParse(text[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture,
                    out var number)
                && double.IsFinite(number))
            {
                value = unit(number);
                return true;
            }
        }

        return TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out value);
    }
}
