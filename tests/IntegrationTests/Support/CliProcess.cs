using System.Diagnostics;
using System.Text.Json;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>One run of the built <c>dw</c> (<c>dotnet src/Cli/bin/&lt;Config&gt;/net10.0/dw.dll ...</c>) as an OS
/// process, as an operator or a script would.</summary>
public sealed record CliRun(string[] Args, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public JsonElement Json => JsonDocument.Parse(Stdout).RootElement;

    public override string ToString() => $"dw {string.Join(' ', Args)} → exit {ExitCode} in "
        + $"{Elapsed.TotalSeconds:0.0} s\nstdout: {Stdout}\nstderr: {Stderr}";

    public static async Task<CliRun> RunAsync(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var dll = Path.Combine(ServiceProcess.RepositoryRoot, "src", "Cli", "bin", ServiceProcess.BuildConfiguration,
            "net10.0", "dw.dll");
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"{dll} is missing: build the solution first");
        }

        var info = new ProcessStartInfo("dotnet", [dll, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment.Remove("DW_RABBITMQ");
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        var elapsed = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"dw {string.Join(' ', args)} did not exit within 60 s");
        }

        return new CliRun(args, process.ExitCode, await stdout, await stderr, elapsed.Elapsed);
    }
}
