using DynamicWorkers.Infrastructure.Telemetry;
using MassTransit;
using MassTransit.Context;
using MassTransit.Logging;
using MassTransit.Middleware;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>One message's view of the saga table: MassTransit's SendSagaPipe calls these in order.</summary>
public sealed class EfSagaRepositoryContext<TSaga, TMessage> :
    ConsumeContextScope<TMessage>,
    SagaRepositoryContext<TSaga, TMessage>
    where TSaga : class, ISagaVersion
    where TMessage : class
{
    readonly DbContext db;
    readonly ConsumeContext<TMessage> consumeContext;
    readonly ISagaConsumeContextFactory<DbContext, TSaga> factory;

    internal EfSagaRepositoryContext(DbContext db, ConsumeContext<TMessage> consumeContext,
        ISagaConsumeContextFactory<DbContext, TSaga> factory)
        : base(consumeContext, db)
    {
        this.db = db;
        this.consumeContext = consumeContext;
        this.factory = factory;
    }

    public Task<SagaConsumeContext<TSaga, TMessage>> Add(TSaga instance)
        => factory.CreateSagaConsumeContext(db, consumeContext, instance, SagaConsumeContextMode.Add);

    public async Task<SagaConsumeContext<TSaga, TMessage>> Insert(TSaga instance)
    {
        var entry = await db.Set<TSaga>().AddAsync(instance, CancellationToken);
        try
        {
            await db.SaveChangesAsync(CancellationToken);
            consumeContext.LogInsert<TSaga, TMessage>(instance.CorrelationId);

            return await factory.CreateSagaConsumeContext(db, consumeContext, instance, SagaConsumeContextMode.Insert);
        }
        catch (DbUpdateException e) when (DbConflicts.IsDuplicateKey(e))
        {
            // Someone else created it first: forget ours; MassTransit then loads theirs.
            entry.State = EntityState.Detached;
            consumeContext.LogInsertFault<TSaga, TMessage>(e, instance.CorrelationId);
            return null!;
        }
    }

    public async Task<SagaConsumeContext<TSaga, TMessage>> Load(Guid correlationId)
    {
        var instance = await db.Set<TSaga>().AsTracking()
            .SingleOrDefaultAsync(x => x.CorrelationId == correlationId, CancellationToken);
        return instance is null
            ? null!
            : await factory.CreateSagaConsumeContext(db, consumeContext, instance, SagaConsumeContextMode.Load);
    }

    /// <summary>A new saga: a racing insert of the same id fails on the primary key and is retried as a load.</summary>
    public async Task Save(SagaConsumeContext<TSaga> context)
    {
        await db.Set<TSaga>().AddAsync(context.Saga, CancellationToken);
        await SaveAndCommitAsync();
    }

    /// <summary>An existing saga: the version check makes a concurrent update fail instead of being lost.</summary>
    public async Task Update(SagaConsumeContext<TSaga> context)
    {
        context.Saga.Version++;
        await SaveAndCommitAsync();
    }

    public async Task Delete(SagaConsumeContext<TSaga> context)
    {
        db.Set<TSaga>().Remove(context.Saga);
        await SaveAndCommitAsync();
    }

    async Task SaveAndCommitAsync()
    {
        try
        {
            await db.SaveChangesAsync(CancellationToken);
        }
        catch (Exception e) when (DbConflicts.IsConflict(e))
        {
            DwTelemetry.SagaConflicts.Add(1, new KeyValuePair<string, object?>("saga", typeof(TSaga).Name));
            throw;
        }

        if (db.Database.CurrentTransaction is { } transaction)
        {
            await transaction.CommitAsync(CancellationToken);
        }
    }

    public Task Discard(SagaConsumeContext<TSaga> context) => Task.CompletedTask;

    public Task Undo(SagaConsumeContext<TSaga> context)
    {
        var entry = db.ChangeTracker.Entries<TSaga>()
            .FirstOrDefault(x => x.Entity.CorrelationId == context.Saga.CorrelationId);
        entry?.State = EntityState.Unchanged;
        return Task.CompletedTask;
    }

    public Task<SagaConsumeContext<TSaga, T>> CreateSagaConsumeContext<T>(ConsumeContext<T> consumeContext,
        TSaga instance, SagaConsumeContextMode mode)
        where T : class
        => factory.CreateSagaConsumeContext(db, consumeContext, instance, mode);
}

/// <summary>Read-only access to sagas outside a message (MassTransit's query and load repositories).</summary>
public sealed class EfSagaQueryContext<TSaga>(DbContext db, CancellationToken cancellationToken) :
    BasePipeContext(cancellationToken),
    QuerySagaRepositoryContext<TSaga>,
    LoadSagaRepositoryContext<TSaga>
    where TSaga : class, ISaga
{
    public Task<TSaga> Load(Guid correlationId)
        => db.Set<TSaga>().AsNoTracking().SingleOrDefaultAsync(x => x.CorrelationId == correlationId,
            CancellationToken)!;

    public async Task<SagaRepositoryQueryContext<TSaga>> Query(ISagaQuery<TSaga> query,
        CancellationToken cancellationToken = default)
    {
        var ids = await db.Set<TSaga>().AsNoTracking().Where(query.FilterExpression)
            .Select(x => x.CorrelationId).ToListAsync(cancellationToken);
        return new DefaultSagaRepositoryQueryContext<TSaga>(this, ids);
    }
}
