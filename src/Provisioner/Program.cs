using DynamicWorkers.Cloud;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.Provisioner;

// Creates worker VMs; scale by running more copies.
return await HostRunner.RunAsync("provisioner", args, builder =>
{
    builder.Services.AddWorkerCloud(builder.Configuration);
    builder.Services.AddDynamicWorkersBus(builder.Configuration, bus => bus.AddProvisionerEndpoints());
});
