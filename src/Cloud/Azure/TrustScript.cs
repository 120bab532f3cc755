using System.Text.RegularExpressions;
using Azure.ResourceManager.Compute.Models;
using DynamicWorkers.Contracts;

namespace DynamicWorkers.Cloud.Azure;

/// <summary>
/// The Run Command that makes a worker's agent trust one instance, and the reading of its output. Only a
/// validated hex thumbprint is ever put into a script: anything else is refused before a call is made.
/// </summary>
public static partial class TrustScript
{
    public const string Placeholder = "{thumbprint}";

    /// <summary>
    /// Tentacle-style default for Linux images: reset trust, trust one thumbprint, restart, print the agent's own
    /// thumbprint.
    /// </summary>
    public const string LinuxDefault = """
        set -e
        TENTACLE=/opt/octopus/tentacle/Tentacle
        $TENTACLE configure --instance Tentacle --reset-trust --console
        $TENTACLE configure --instance Tentacle --trust {thumbprint} --console
        $TENTACLE service --instance Tentacle --restart --console
        $TENTACLE show-thumbprint --instance Tentacle --nologo --console
        """;

    /// <summary>The same for Windows images, in PowerShell.</summary>
    public const string WindowsDefault = """
        $ErrorActionPreference = 'Stop'
        $tentacle = 'C:\Program Files\Octopus Deploy\Tentacle\Tentacle.exe'
        & $tentacle configure --instance Tentacle --reset-trust --console; if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
        & $tentacle configure --instance Tentacle --trust '{thumbprint}' --console; if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
        & $tentacle service --instance Tentacle --restart --console; if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
        & $tentacle show-thumbprint --instance Tentacle --nologo --console
        """;

    /// <summary>
    /// The Run Command for one thumbprint; throws <see cref="ArgumentException"/> for anything but 40 or 64 hex digits.
    /// </summary>
    public static RunCommandInput Build(WorkerOsType os, string? template, string thumbprint)
    {
        if (!Thumbprint.IsValid(thumbprint))
        {
            throw new ArgumentException("only a 40- or 64-digit hex thumbprint may reach a trust script",
                nameof(thumbprint));
        }

        var script = (template ?? (os == WorkerOsType.Windows ? WindowsDefault : LinuxDefault))
            .Replace(Placeholder, thumbprint.ToUpperInvariant(), StringComparison.Ordinal);
        var input = new RunCommandInput(os == WorkerOsType.Windows ? "RunPowerShellScript" : "RunShellScript");
        foreach (var line in script.ReplaceLineEndings("\n").Split('\n'))
        {
            input.Script.Add(line);
        }

        return input;
    }

    /// <summary>
    /// The agent's thumbprint: the last 40- or 64-digit hex word of the script's standard output. Windows
    /// reports stdout as its own status (<c>ComponentStatus/StdOut/succeeded</c>); Linux as one message with
    /// <c>[stdout]</c> and <c>[stderr]</c> sections.
    /// </summary>
    public static string? AgentThumbprint(IEnumerable<InstanceViewStatus> statuses)
    {
        var stdout = string.Join("\n", statuses.Select(StdOutOf));
        var matches = HexWord().Matches(stdout);
        return matches.Count == 0 ? null : matches[^1].Value.ToUpperInvariant();
    }

    /// <summary>Standard error, for the log when no thumbprint came back.</summary>
    public static string StdErr(IEnumerable<InstanceViewStatus> statuses)
        => string.Join("\n", statuses.Select(s => s.Code?.Contains("StdErr", StringComparison.OrdinalIgnoreCase) == true
            ? s.Message
            : After(s.Message, "[stderr]")));

    static string StdOutOf(InstanceViewStatus status)
    {
        if (status.Code?.Contains("StdOut", StringComparison.OrdinalIgnoreCase) == true)
        {
            return status.Message ?? "";
        }

        var message = status.Message ?? "";
        var start = message.IndexOf("[stdout]", StringComparison.Ordinal);
        if (start < 0)
        {
            return "";
        }

        var end = message.IndexOf("[stderr]", start, StringComparison.Ordinal);
        return end < 0 ? message[start..] : message[start..end];
    }

    static string After(string? message, string marker)
    {
        var start = message?.IndexOf(marker, StringComparison.Ordinal) ?? -1;
        return start < 0 ? "" : message![(start + marker.Length)..].Trim();
    }

    [GeneratedRegex(@"\b(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{40})\b")]
    private static partial Regex HexWord();
}
