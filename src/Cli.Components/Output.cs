using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace DynamicWorkers.Cli;

/// <summary>
/// Human tables by default, one JSON document with <c>--json</c>. Results go to stdout, errors to stderr.
/// </summary>
public sealed class Output(TextWriter stdout, TextWriter stderr, bool json)
{
    static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    public bool Json => json;

    public void WriteJson(object value) => stdout.WriteLine(JsonSerializer.Serialize(value, value.GetType(),
        JsonOptions));

    public void WriteLine(string text) => stdout.WriteLine(text);

    public void Error(string text) => stderr.WriteLine($"dw: {text}");

    /// <summary>Left-aligned columns, two spaces apart, headers in capitals.</summary>
    public void WriteTable(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = rows.ToList();
        var widths = headers.Select((h, i) => all.Select(r => r[i].Length).Prepend(h.Length).Max()).ToArray();
        stdout.WriteLine(Line(headers.Select(h => h.ToUpperInvariant()).ToList()));
        foreach (var row in all)
        {
            stdout.WriteLine(Line(row));
        }

        string Line(IReadOnlyList<string> cells)
        {
            var line = new StringBuilder();
            for (var i = 0; i < cells.Count; i++)
            {
                line.Append(i == cells.Count - 1 ? cells[i] : cells[i].PadRight(widths[i] + 2));
            }

            return line.ToString().TrimEnd();
        }
    }

    /// <summary>Name/value pairs, one per line, for a single record.</summary>
    public void WriteFields(params (string Name, string Value)[] fields)
    {
        var width = fields.Max(f => f.Name.Length) + 2;
        foreach (var (name, value) in fields)
        {
            stdout.WriteLine((name + ":").PadRight(width) + value);
        }
    }
}
