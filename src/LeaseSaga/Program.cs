using DynamicWorkers.Cloud;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.LeaseSaga;
using DynamicWorkers.LeaseSaga.Http;

// Owns all state, hosts the durable scheduler endpoint every service schedules through, and serves the
// ops API and dashboard beside /healthz, /readyz and /metrics.
return await HostRunner.RunAsync("lease-saga", args, builder =>
{
    builder.Services.AddLeaseSagaServices(builder.Configuration);
    // Only to read whether an idle worker's VM still runs before it is leased again.
    builder.Services.AddWorkerCloud(builder.Configuration, healthReadsOnly: true);
    builder.Services.AddDynamicWorkersBus(builder.Configuration, bus => bus.AddLeaseSagaEndpoints(),
        hostScheduler: true);
}, app => app.MapLeaseSagaHttp());
