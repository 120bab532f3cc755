using DynamicWorkers.Contracts;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Queries;

/// <summary>Answers <see cref="GetPoolStatus"/>: configured pools, persisted sizes, live counts.</summary>
public sealed class GetPoolStatusConsumer(OpsQueries queries) : IConsumer<GetPoolStatus>
{
    public async Task Consume(ConsumeContext<GetPoolStatus> context)
        => await context.RespondAsync(new PoolStatus(
            await queries.PoolsAsync(context.Message.Pool, context.CancellationToken)));
}

/// <summary>Answers <see cref="GetWorkers"/>.</summary>
public sealed class GetWorkersConsumer(OpsQueries queries) : IConsumer<GetWorkers>
{
    public async Task Consume(ConsumeContext<GetWorkers> context)
        => await context.RespondAsync(new WorkerList(
            await queries.WorkersAsync(context.Message.Pool, context.Message.InstanceId, context.CancellationToken)));
}

/// <summary>Answers <see cref="GetLeases"/> with as many leases as the HTTP API's largest page.</summary>
public sealed class GetLeasesConsumer(OpsQueries queries) : IConsumer<GetLeases>
{
    public async Task Consume(ConsumeContext<GetLeases> context)
        => await context.RespondAsync(new LeaseList(
            await queries.LeasesAsync(context.Message.Pool, context.Message.InstanceId, OpsQueries.MaxLeases,
                context.CancellationToken)));
}
