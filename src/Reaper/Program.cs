using DynamicWorkers.Cloud;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.Reaper;

// Deletes worker VMs and sweeps for leaks; scale by running more copies.
return await HostRunner.RunAsync("reaper", args, builder =>
{
    builder.Services.AddWorkerCloud(builder.Configuration);
    builder.Services.AddReaperServices(builder.Configuration);
    builder.Services.AddDynamicWorkersBus(builder.Configuration, bus => bus.AddReaperEndpoints());
});
