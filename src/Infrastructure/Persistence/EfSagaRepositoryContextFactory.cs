using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using MassTransit;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// MassTransit saga repository over EF Core with optimistic concurrency: a saga is loaded without a lock
/// and saved with <c>WHERE Version = @loaded</c>; the loser of a race gets a
/// <see cref="DbUpdateConcurrencyException"/> and the endpoint's retry runs it again on fresh state.
/// Resolved from the per-message scope, so <typeparamref name="TDbContext"/> is that message's context.
/// </summary>
public sealed class EfSagaRepositoryContextFactory<TSaga, TDbContext>(
    TDbContext db,
    ISagaConsumeContextFactory<DbContext, TSaga> consumeContextFactory,
    SagaGate<TSaga>? gate = null) :
    ISagaRepositoryContextFactory<TSaga>,
    IQuerySagaRepositoryContextFactory<TSaga>,
    ILoadSagaRepositoryContextFactory<TSaga>
    where TSaga : class, ISagaVersion
    where TDbContext : DbContext
{
    public void Probe(ProbeContext context) => context.Add("persistence", "entity-framework-core-optimistic");

    public async Task Send<T>(ConsumeContext<T> context, IPipe<SagaRepositoryContext<TSaga, T>> next)
        where T : class
    {
        if (gate is null)
        {
            await next.Send(new EfSagaRepositoryContext<TSaga, T>(db, context, consumeContextFactory, null));
            return;
        }

        await gate.WaitAsync(context.CancellationToken);
        try
        {
            await next.Send(new EfSagaRepositoryContext<TSaga, T>(db, context, consumeContextFactory, gate));
        }
        finally
        {
            gate.Release();
        }
    }

    public async Task SendQuery<T>(ConsumeContext<T> context, ISagaQuery<TSaga> query, IPipe<SagaRepositoryQueryContext<TSaga, T>> next)
        where T : class
    {
        var repositoryContext = new EfSagaRepositoryContext<TSaga, T>(db, context, consumeContextFactory, null);
        var instances = await db.Set<TSaga>().AsTracking().Where(query.FilterExpression).ToListAsync(context.CancellationToken);
        await next.Send(new LoadedSagaRepositoryQueryContext<TSaga, T>(repositoryContext, instances));
    }

    public Task<T> Execute<T>(Func<LoadSagaRepositoryContext<TSaga>, Task<T>> asyncMethod, CancellationToken cancellationToken = default)
        where T : class
        => asyncMethod(new EfSagaQueryContext<TSaga>(db, cancellationToken));

    public Task<T> Execute<T>(Func<QuerySagaRepositoryContext<TSaga>, Task<T>> asyncMethod, CancellationToken cancellationToken = default)
        where T : class
        => asyncMethod(new EfSagaQueryContext<TSaga>(db, cancellationToken));
}

/// <summary>
/// Lets one message at a time (per process) load, run and save a saga of this type, while the messages before it
/// still publish what they decided: for a few sagas that get many messages each, so that they take turns instead of
/// losing on the version and retrying, and the endpoint may still run several messages at once (the outbox sends
/// after the save, outside the gate). Register it as a singleton to use it.
/// Since the messages take turns, the gate also keeps each saga as its last message saved it: the next one reads only
/// the version (a write by another process makes it read the whole row again), and a message that changed nothing
/// writes nothing. For a saga with a large document, such as a pool's ledger, that is most of a message's cost.
/// </summary>
public sealed class SagaGate<TSaga>
    where TSaga : class, ISagaVersion
{
    readonly SemaphoreSlim _turn = new(1, 1);

    // Touched only by the message whose turn it is.
    readonly Dictionary<Guid, Kept> _kept = [];

    public Task WaitAsync(CancellationToken cancellationToken) => _turn.WaitAsync(cancellationToken);

    public void Release() => _turn.Release();

    /// <summary>Hands the kept copy to the message whose turn it is; it is kept again only once that message saved it.</summary>
    internal Kept? Take(Guid correlationId) => _kept.Remove(correlationId, out var kept) ? kept : null;

    internal void Keep(TSaga saga, byte[] fingerprint) => _kept[saga.CorrelationId] = new Kept(saga, fingerprint);

    /// <summary>A saga as saved, and a hash of its content without the version (to tell whether a message changed it).</summary>
    internal sealed record Kept(TSaga Saga, byte[] Fingerprint);

    static readonly JsonSerializerOptions FingerprintOptions = new()
    {
        TypeInfoResolver = new DefaultJsonTypeInfoResolver
        {
            Modifiers =
            {
                type =>
                {
                    if (type.Type == typeof(TSaga) && type.Properties.FirstOrDefault(p => p.Name == nameof(ISagaVersion.Version)) is { } version)
                    {
                        type.Properties.Remove(version);
                    }
                },
            },
        },
    };

    // One buffer for every fingerprint, since only the message whose turn it is takes one: a pool's ledger is large enough
    // (150 KB with a thousand leases waiting) that a fresh copy per message landed on the large object heap and drove
    // several full collections a second in a flood.
    readonly ArrayBufferWriter<byte> _buffer = new();
    Utf8JsonWriter? _writer;

    /// <summary>A hash of the saga's content without its version; called only by the message whose turn it is.</summary>
    internal byte[] Fingerprint(TSaga saga)
    {
        _buffer.ResetWrittenCount();
        if (_writer is null)
        {
            _writer = new Utf8JsonWriter(_buffer);
        }
        else
        {
            _writer.Reset(_buffer);
        }

        JsonSerializer.Serialize(_writer, saga, FingerprintOptions);
        _writer.Flush();
        return SHA256.HashData(_buffer.WrittenSpan);
    }
}
