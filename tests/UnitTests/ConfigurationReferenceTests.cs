using System.Reflection;
using System.Text.RegularExpressions;
using DynamicWorkers.Cloud;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.Reaper;

namespace DynamicWorkers.UnitTests;

/// <summary>The configuration reference (docs/configuration.md) and the options classes name the same keys, both
/// ways.</summary>
public sealed partial class ConfigurationReferenceTests
{
    static readonly Assembly[] Modules = [typeof(DatabaseOptions).Assembly, typeof(CloudOptions).Assembly,
        typeof(PoolsOptions).Assembly, typeof(ReaperOptions).Assembly];

    [Fact]
    public void Every_setting_the_code_binds_is_documented()
    {
        var documented = DocumentedKeys();
        var missing = BoundKeys().Except(documented).Order().ToList();
        Assert.True(missing.Count == 0, "not in the table of docs/configuration.md: " + string.Join(", ", missing));
    }

    [Fact]
    public void Every_documented_setting_is_bound_by_the_code()
    {
        var bound = BoundKeys();
        var unknown = DocumentedKeys().Except(bound).Order().ToList();
        Assert.True(unknown.Count == 0,
            "in docs/configuration.md but bound by no options class: " + string.Join(", ", unknown));
    }

    /// <summary>Section:Property of every options class with a <c>Section</c> constant, plus the keys bound by
    /// hand.</summary>
    static HashSet<string> BoundKeys()
    {
        // AllowedHosts is read by ASP.NET Core's host filtering, which every host's WebApplication puts first.
        var keys =
            new HashSet<string>(StringComparer.Ordinal) { "Transport", "ConnectionStrings:Default", "AllowedHosts" };
        foreach (var type in Modules.SelectMany(a => a.GetExportedTypes()))
        {
            var section =
                type.GetField("Section", BindingFlags.Public | BindingFlags.Static)?.GetRawConstantValue() as string;
            if (section is null || type == typeof(PoolsOptions))
            {
                continue;
            }

            keys.UnionWith(Settable(type)
                .Where(p => !(type == typeof(DatabaseOptions) && p.Name == nameof(DatabaseOptions.ConnectionString)))
                .SelectMany(p => KeysOf($"{section}:{p.Name}", p.PropertyType)));
        }

        keys.UnionWith(Settable(typeof(PoolOptions)).SelectMany(p => p.PropertyType == typeof(AdaptiveHotTargetOptions)
            ? Settable(p.PropertyType).Select(n => $"{PoolsOptions.Section}:<name>:{p.Name}:{n.Name}")
            : [$"{PoolsOptions.Section}:<name>:{p.Name}"]));
        return keys;
    }

    /// <summary>A per-name map of settings (e.g. <c>Cloud:Azure:Pools</c>) is documented as
    /// <c>Key:&lt;name&gt;:Property</c>.</summary>
    static IEnumerable<string> KeysOf(string key, Type type)
        => type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>)
            && type.GetGenericArguments()[1] is { IsClass: true } value && value != typeof(string)
            ? Settable(value).Select(p => $"{key}:<name>:{p.Name}")
            : [key];

    static IEnumerable<PropertyInfo> Settable(Type type)
        => type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.SetMethod?.IsPublic == true);

    /// <summary>First-column keys of the Keys table in docs/configuration.md; <c>`A:B`, `:C`</c> means A:B and
    /// A:C.</summary>
    static HashSet<string> DocumentedKeys()
    {
        var reference = File.ReadAllText(Path.Combine(RepositoryFiles.Root, "docs", "configuration.md"));
        var start = reference.IndexOf("\n## Keys", StringComparison.Ordinal);
        Assert.True(start >= 0, "docs/configuration.md has no Keys section");
        var table = reference[start..];
        var end = table.IndexOf("\n## ", 5, StringComparison.Ordinal);
        table = end < 0 ? table : table[..end];
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var row in table.Split('\n').Where(l => l.StartsWith("| `", StringComparison.Ordinal)))
        {
            var prefix = "";
            foreach (Match code in CodeSpan().Matches(row.Split('|')[1]))
            {
                var key = code.Groups[1].Value;
                if (key.StartsWith(':'))
                {
                    keys.Add(prefix + key);
                }
                else
                {
                    keys.Add(key);
                    prefix = key[..Math.Max(0, key.LastIndexOf(':'))];
                }
            }
        }

        return keys;
    }

    [GeneratedRegex("`([^`]+)`")]
    private static partial Regex CodeSpan();
}
