using DynamicWorkers.Cloud;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.Trust;

// Makes a worker trust exactly one instance's thumbprint; scale by running more copies.
return await HostRunner.RunAsync("trust", args, builder =>
{
    builder.Services.AddWorkerCloud(builder.Configuration);
    builder.Services.AddDynamicWorkersBus(builder.Configuration, bus => bus.AddTrustEndpoints());
});
