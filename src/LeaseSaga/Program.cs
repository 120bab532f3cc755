using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.LeaseSaga;

// Owns all state, and hosts the durable scheduler endpoint every service schedules through.
return await HostRunner.RunAsync("lease-saga", args, builder =>
{
    builder.Services.AddLeaseSagaServices(builder.Configuration);
    builder.Services.AddDynamicWorkersBus(builder.Configuration, bus => bus.AddLeaseSagaEndpoints(), hostScheduler: true);
});
