using DynamicWorkers.Cloud;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.LeaseSaga;
using DynamicWorkers.Provisioner;
using DynamicWorkers.Reaper;
using DynamicWorkers.Trust;
using Microsoft.Extensions.Configuration.Memory;

// Every service in one process: in-memory transport, SQLite under the user's data directory.
// appsettings.json, environment variables and the command line override these defaults.
var dataDirectory = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "dynamic-workers");
Directory.CreateDirectory(dataDirectory);
var defaults = new Dictionary<string, string?>
{
    ["Transport"] = "InMemory",
    ["Database:Provider"] = "Sqlite",
    ["ConnectionStrings:Default"] = $"Data Source={Path.Combine(dataDirectory, "dynamic-workers.db")}",
};

return await HostRunner.RunAsync("standalone", args, builder =>
{
    builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource { InitialData = defaults });
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
});
