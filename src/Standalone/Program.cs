using DynamicWorkers.Cloud;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.LeaseSaga;
using DynamicWorkers.LeaseSaga.Http;
using DynamicWorkers.Provisioner;
using DynamicWorkers.Reaper;
using DynamicWorkers.Standalone;
using DynamicWorkers.Trust;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;

// Every service in one process: in-memory transport, SQLite under the user's data directory, the simulated
// cloud, the dashboard on http://127.0.0.1:8080/. `--demo` also plays a few instances with compressed timeouts.
// appsettings.json, environment variables and the command line override these defaults.
var demo = args.Contains(DemoInstances.Switch);
args = args.Where(a => a != DemoInstances.Switch).ToArray();
var dataDirectory = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData,
    Environment.SpecialFolderOption.Create), "dynamic-workers");
Directory.CreateDirectory(dataDirectory);
var defaults = new Dictionary<string, string?>
{
    ["Transport"] = "InMemory",
    ["Database:Provider"] = "Sqlite",
    ["ConnectionStrings:Default"] = $"Data Source={Path.Combine(dataDirectory, "dynamic-workers.db")}",
};
var demoSettings = new Dictionary<string, string?>();
if (demo)
{
    DemoInstances.AddDefaults(demoSettings, dataDirectory);
}

return await HostRunner.RunAsync("standalone", args, builder =>
{
    builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = defaults });
    if (demo)
    {
        // appsettings.json sets production timeouts: the demo's shrunk ones go after it, still under the environment
        // and command line.
        var afterJson = builder.Configuration.Sources.ToList().FindLastIndex(s => s is JsonConfigurationSource) + 1;
        builder.Configuration.Sources.Insert(afterJson, new MemoryConfigurationSource { InitialData = demoSettings });
    }

    builder.Services.AddLeaseSagaServices(builder.Configuration);
    builder.Services.AddWorkerCloud(builder.Configuration);
    builder.Services.AddReaperServices(builder.Configuration);
    builder.Services.AddDynamicWorkersBus(
        builder.Configuration,
        bus =>
        {
            bus.AddLeaseSagaEndpoints();
            bus.AddProvisionerEndpoints();
            bus.AddTrustEndpoints();
            bus.AddReaperEndpoints();
        },
        hostScheduler: true);
    if (demo)
    {
        builder.Services.AddHostedService<DemoInstances>();
    }
}, app =>
{
    app.MapLeaseSagaHttp();
    app.Lifetime.ApplicationStarted.Register(() =>
    {
        var address = app.Urls.First();
        Console.WriteLine($"Dynamic Workers is running. Dashboard: {address}/  (Ctrl+C to stop)");
    });
});
