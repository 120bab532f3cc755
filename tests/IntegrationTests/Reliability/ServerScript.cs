using System.Diagnostics;
using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>A script of <c>scripts/</c> that starts, breaks or stops a test's private servers.</summary>
static class ServerScript
{
    /// <summary>Runs it and returns its standard output; any failure fails the test with all its output.</summary>
    public static async Task<string> RunAsync(string script, params string[] arguments)
    {
        var info =
            new ProcessStartInfo("bash", [Path.Combine(ServiceProcess.RepositoryRoot, "scripts", script), .. arguments])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(deadline.Token);
        var command = string.Join(' ', [script, .. arguments]);
        Assert.True(process.ExitCode == 0, $"{command} failed ({process.ExitCode}): {await stdout}{await stderr}");
        return await stdout;
    }
}
