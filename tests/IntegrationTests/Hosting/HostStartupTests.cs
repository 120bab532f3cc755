using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Hosting;

/// <summary>A deployable with a bad setting refuses to start, saying in one line which key is wrong.</summary>
public sealed class HostStartupTests
{
    public static TheoryData<string, string, string, string> BadSettings => new()
    {
        { "LeaseSaga", "ConnectionStrings:Default", "", "ConnectionStrings:Default is required" },
        { "LeaseSaga", "Database:Provider", "Oracle", "Database:Provider" },
        { "LeaseSaga", "Scheduler:ClusterCheckinInterval", "00:00:00", "ClusterCheckinInterval" },
        { "LeaseSaga", "RabbitMq:Port", "0", "Port" },
        { "LeaseSaga", "Transport", "Carrier pigeon", "Transport" },
        { "Provisioner", "Http:Port", "70000", "Port" },
        { "Reaper", "Http:Host", "localhost", "Http:Host must be an IP address" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task A_bad_setting_stops_start_up_with_one_clear_line(string project, string key, string value,
        string expected)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Database:Provider"] = "Postgres",
            ["ConnectionStrings:Default"] = "Host=127.0.0.1;Database=never-reached",
            [key] = value,
        };
        await using var service = ServiceProcess.Start(project, settings);

        await service.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, service.ExitCode);
        var lines = service.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var line = Assert.Single(lines);
        Assert.StartsWith($"{project.ToLowerInvariant().Replace("leasesaga", "lease-saga")}: invalid configuration: ",
            line);
        Assert.Contains(expected, line);
    }
}
