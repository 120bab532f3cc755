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
    readonly SagaGate<TSaga>? gate;
    readonly SagaGate<TSaga>.Turn? turn;

    /// <summary>With a gate (and this message's <paramref name="turn"/> through it), loads and saves go through the gate's groups.</summary>
    internal EfSagaRepositoryContext(
        DbContext db, ConsumeContext<TMessage> consumeContext, ISagaConsumeContextFactory<DbContext, TSaga> factory, SagaGate<TSaga>? gate, SagaGate<TSaga>.Turn? turn)
        : base(consumeContext, db)
    {
        this.db = db;
        this.consumeContext = consumeContext;
        this.factory = factory;
        this.gate = gate;
        this.turn = turn;
    }

    public Task<SagaConsumeContext<TSaga, TMessage>> Add(TSaga instance)
        => factory.CreateSagaConsumeContext(db, consumeContext, instance, SagaConsumeContextMode.Add);

    public async Task<SagaConsumeContext<TSaga, TMessage>> Insert(TSaga instance)
    {
        if (gate?.Open is not null)
        {
            await gate.SaveOpenAsync(db, CancellationToken);
        }

        var entry = await db.Set<TSaga>().AddAsync(instance, CancellationToken);
        try
        {
            await db.SaveChangesAsync(CancellationToken);
            consumeContext.LogInsert<TSaga, TMessage>(instance.CorrelationId);
            if (gate is not null && turn is not null)
            {
                // What the message then decides joins a group on the row just inserted, saved like any other.
                entry.State = EntityState.Detached;
                turn.Join(gate.OpenGroup(instance, gate.Fingerprint(instance)));
            }

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
        if (gate is not null && turn is not null)
        {
            return await LoadThroughGate(gate, turn, correlationId);
        }

        var instance = await db.Set<TSaga>().AsTracking()
            .SingleOrDefaultAsync(x => x.CorrelationId == correlationId, CancellationToken);
        return instance is null ? null! : await factory.CreateSagaConsumeContext(db, consumeContext, instance, SagaConsumeContextMode.Load);
    }

    /// <summary>
    /// Decides on top of the open group's decisions when it is this saga's, with no database round trip; otherwise
    /// saves that group first and starts one on this saga: the kept copy if the version says it is current, else the row.
    /// The saga is tracked by no context until its group is saved.
    /// </summary>
    async Task<SagaConsumeContext<TSaga, TMessage>> LoadThroughGate(SagaGate<TSaga> gate, SagaGate<TSaga>.Turn turn, Guid correlationId)
    {
        if (gate.Open is { } open)
        {
            if (open.Saga.CorrelationId == correlationId)
            {
                turn.Join(open);
                return await factory.CreateSagaConsumeContext(db, consumeContext, open.Saga, SagaConsumeContextMode.Load);
            }

            await gate.SaveOpenAsync(db, CancellationToken);
        }

        if (gate.Take(correlationId) is { } kept)
        {
            var version = await db.Set<TSaga>().Where(x => x.CorrelationId == correlationId)
                .Select(x => (int?)x.Version).SingleOrDefaultAsync(CancellationToken);
            if (version == kept.Saga.Version)
            {
                turn.Join(gate.OpenGroup(kept.Saga, kept.Fingerprint));
                return await factory.CreateSagaConsumeContext(db, consumeContext, kept.Saga, SagaConsumeContextMode.Load);
            }
        }

        var instance = await db.Set<TSaga>().AsNoTracking().SingleOrDefaultAsync(x => x.CorrelationId == correlationId, CancellationToken);
        if (instance is null)
        {
            return null!;
        }

        turn.Join(gate.OpenGroup(instance, gate.Fingerprint(instance)));
        return await factory.CreateSagaConsumeContext(db, consumeContext, instance, SagaConsumeContextMode.Load);
    }

    /// <summary>A new saga: a racing insert of the same id fails on the primary key and is retried as a load.</summary>
    public async Task Save(SagaConsumeContext<TSaga> context)
    {
        var entry = await db.Set<TSaga>().AddAsync(context.Saga, CancellationToken);
        await db.SaveChangesAsync(CancellationToken);
        if (gate is not null)
        {
            entry.State = EntityState.Detached;
            gate.Keep(context.Saga);
        }
    }

    /// <summary>
    /// An existing saga: the version check makes a concurrent update fail instead of being lost. Through a gate the
    /// decision joined a group, which saves it (see <see cref="SagaGate{TSaga}"/>).
    /// </summary>
    public async Task Update(SagaConsumeContext<TSaga> context)
    {
        if (gate is not null)
        {
            return;
        }

        context.Saga.Version++;
        await db.SaveChangesAsync(CancellationToken).CountingConflicts<TSaga>();
    }

    public async Task Delete(SagaConsumeContext<TSaga> context)
    {
        if (gate is not null && gate.Open is { } open && ReferenceEquals(open.Saga, context.Saga))
        {
            // The group's decisions first (the version then guards the delete), and nothing kept of a deleted saga.
            await gate.SaveOpenAsync(db, CancellationToken);
            gate.Take(context.Saga.CorrelationId);
        }

        db.Set<TSaga>().Remove(context.Saga);
        await db.SaveChangesAsync(CancellationToken).CountingConflicts<TSaga>();
    }

    public Task Discard(SagaConsumeContext<TSaga> context) => Task.CompletedTask;

    public Task Undo(SagaConsumeContext<TSaga> context)
    {
        var entry = db.ChangeTracker.Entries<TSaga>().FirstOrDefault(x => x.Entity.CorrelationId == context.Saga.CorrelationId);
        entry?.State = EntityState.Unchanged;
        return Task.CompletedTask;
    }

    public Task<SagaConsumeContext<TSaga, T>> CreateSagaConsumeContext<T>(ConsumeContext<T> consumeContext, TSaga instance, SagaConsumeContextMode mode)
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
        => db.Set<TSaga>().AsNoTracking().SingleOrDefaultAsync(x => x.CorrelationId == correlationId, CancellationToken)!;

    public async Task<SagaRepositoryQueryContext<TSaga>> Query(ISagaQuery<TSaga> query, CancellationToken cancellationToken = default)
    {
        var ids = await db.Set<TSaga>().AsNoTracking().Where(query.FilterExpression)
            .Select(x => x.CorrelationId).ToListAsync(cancellationToken);
        return new DefaultSagaRepositoryQueryContext<TSaga>(this, ids);
    }
}
