using System.Diagnostics;
using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Benchmarks;

/// <summary>
/// The benchmark (bench/, scripts/bench.sh) in its smoke mode, so it never rots: every section runs for a second or so
/// against services started as processes, and every lease must be answered. Its figures are not checked here.
/// </summary>
public sealed class BenchmarkSmokeTests
{
    [Fact]
    public async Task Smoke_run_measures_every_section_and_answers_every_lease()
    {
        var dll = Path.Combine(ServiceProcess.RepositoryRoot, "bench", "bin", ServiceProcess.BuildConfiguration,
            "net10.0", "DynamicWorkers.Bench.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: build the solution first");
        var report = Path.Combine(Path.GetTempPath(), $"dw-bench-smoke-{Guid.NewGuid():N}.md");
        var info = new ProcessStartInfo("dotnet", [dll, "--smoke", "--out", report])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["DW_TEST_RABBITMQ_HOST"] = TestServers.RabbitMqHost;
        info.Environment["DW_TEST_RABBITMQ_USER"] = TestServers.RabbitMqUser;
        info.Environment["DW_TEST_RABBITMQ_PASSWORD"] = TestServers.RabbitMqPassword;
        info.Environment["DW_TEST_RABBITMQ_MANAGEMENT"] = TestServers.RabbitMqManagement;
        info.Environment["DW_TEST_POSTGRES"] = TestServers.PostgresAdmin;

        using var bench = Process.Start(info)!;
        var stdout = bench.StandardOutput.ReadToEndAsync();
        var stderr = bench.StandardError.ReadToEndAsync();
        using (var deadline = new CancellationTokenSource(TimeSpan.FromMinutes(6)))
        {
            try
            {
                await bench.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                bench.Kill(entireProcessTree: true);
                Assert.Fail($"the smoke run took more than 6 minutes:\n{await stderr}");
            }
        }

        try
        {
            Assert.True(bench.ExitCode == 0, $"exit code {bench.ExitCode}:\n{await stderr}\n{await stdout}");
            var table = await File.ReadAllTextAsync(report);
            foreach (var section in new[]
                     {
                         "raw limit", "raw lifecycle", "hot lease latency", "deliveries per hot lease",
                             "re-use lease latency", "lifecycle ceiling",
                         "messages per lifecycle", "database writes per lifecycle", "lifecycle hold",
                         "sustained lifecycle throughput", "pools",
                         "footprint", "scale-out", "pool size",
                     })
            {
                Assert.Contains($"| {section} |", table);
            }
        }
        finally
        {
            File.Delete(report);
        }
    }
}
