using MassTransit;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// MassTransit saga repository over EF Core with optimistic concurrency: a saga is loaded without a lock
/// and saved with <c>WHERE Version = @loaded</c>; the loser of a race gets a
/// <see cref="DbUpdateConcurrencyException"/> and the endpoint's retry runs it again on fresh state.
/// Resolved from the per-message scope, so <typeparamref name="TDbContext"/> is that message's context. A transaction
/// the saga's activities began on it (row claims, see the LeaseSaga's Allocator) is committed with the saga's save.
/// </summary>
public sealed class EfSagaRepositoryContextFactory<TSaga, TDbContext>(
    TDbContext db,
    ISagaConsumeContextFactory<DbContext, TSaga> consumeContextFactory) :
    ISagaRepositoryContextFactory<TSaga>,
    IQuerySagaRepositoryContextFactory<TSaga>,
    ILoadSagaRepositoryContextFactory<TSaga>
    where TSaga : class, ISagaVersion
    where TDbContext : DbContext
{
    public void Probe(ProbeContext context) => context.Add("persistence", "entity-framework-core-optimistic");

    public Task Send<T>(ConsumeContext<T> context, IPipe<SagaRepositoryContext<TSaga, T>> next)
        where T : class
        => next.Send(new EfSagaRepositoryContext<TSaga, T>(db, context, consumeContextFactory));

    public async Task SendQuery<T>(ConsumeContext<T> context, ISagaQuery<TSaga> query,
        IPipe<SagaRepositoryQueryContext<TSaga, T>> next)
        where T : class
    {
        var repositoryContext = new EfSagaRepositoryContext<TSaga, T>(db, context, consumeContextFactory);
        var instances = await db.Set<TSaga>().AsTracking().Where(query.FilterExpression)
            .ToListAsync(context.CancellationToken);
        await next.Send(new LoadedSagaRepositoryQueryContext<TSaga, T>(repositoryContext, instances));
    }

    public Task<T> Execute<T>(Func<LoadSagaRepositoryContext<TSaga>, Task<T>> asyncMethod,
        CancellationToken cancellationToken = default)
        where T : class
        => asyncMethod(new EfSagaQueryContext<TSaga>(db, cancellationToken));

    public Task<T> Execute<T>(Func<QuerySagaRepositoryContext<TSaga>, Task<T>> asyncMethod,
        CancellationToken cancellationToken = default)
        where T : class
        => asyncMethod(new EfSagaQueryContext<TSaga>(db, cancellationToken));
}
