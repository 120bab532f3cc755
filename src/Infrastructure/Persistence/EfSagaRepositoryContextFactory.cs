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
            await next.Send(new EfSagaRepositoryContext<TSaga, T>(db, context, consumeContextFactory, null, null));
            return;
        }

        var cancellationToken = context.CancellationToken;
        await gate.EnterAsync(cancellationToken);
        var turn = new SagaGate<TSaga>.Turn();
        var holding = true;
        try
        {
            try
            {
                await next.Send(new EfSagaRepositoryContext<TSaga, T>(db, context, consumeContextFactory, gate, turn));
            }
            catch when (turn.Group is { } joined && gate.IsOpen(joined))
            {
                // Failed halfway through its decision: the unsaved decisions before it can no longer be told from its own.
                gate.Abandon(joined);
                throw;
            }

            if (turn.Group is { } group && gate.IsOpen(group))
            {
                if (gate.ShouldPassOn(group))
                {
                    // Others wait: the next one decides on top of this decision, and the last of the group saves them all.
                    gate.Leave();
                    holding = false;
                    await gate.SavedAsync(group, db, cancellationToken);
                }
                else
                {
                    await gate.SaveOpenAsync(db, cancellationToken);
                }
            }
        }
        finally
        {
            if (holding)
            {
                gate.Leave();
            }
        }
    }

    public async Task SendQuery<T>(ConsumeContext<T> context, ISagaQuery<TSaga> query, IPipe<SagaRepositoryQueryContext<TSaga, T>> next)
        where T : class
    {
        var repositoryContext = new EfSagaRepositoryContext<TSaga, T>(db, context, consumeContextFactory, null, null);
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
/// Lets one message at a time (per process) load and decide on a saga of this type: for a few sagas that get many
/// messages each, so that they take turns instead of losing on the version and retrying, while the endpoint still runs
/// several messages at once (each one's outbox publishes after its save, outside the gate). Register it as a singleton
/// to use it.
/// Since the messages take turns, the gate keeps each saga in memory as it was last saved: the next message reads only
/// the version (a write by another process makes it read the whole row again). And while others wait, a message's
/// decision is not saved on its own: the next message decides on top of it, and the last of such a group (at most
/// <see cref="MaxGroup"/>) saves them all in one write guarded by the version the group started from. Each message of
/// the group completes (and publishes) only once that write succeeded; if it fails, or one of them fails halfway
/// through its decision, every one of them runs again on the saved state. A group that changed nothing writes nothing.
/// For a saga with a large document, such as a pool's ledger, the reads and writes are most of a message's cost.
/// </summary>
public sealed class SagaGate<TSaga>
    where TSaga : class, ISagaVersion
{
    public const int MaxGroup = 64;

    /// <summary>How long a message of a group waits for the save before it takes a turn to save the group itself.</summary>
    static readonly TimeSpan HandOverTimeout = TimeSpan.FromSeconds(1);

    readonly SemaphoreSlim _turn = new(1, 1);
    int _waiting;

    // Touched only by the message whose turn it is.
    readonly Dictionary<Guid, Kept> _kept = [];
    Group? _open;

    internal async Task EnterAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _waiting);
        try
        {
            await _turn.WaitAsync(cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    internal void Leave() => _turn.Release();

    /// <summary>The decisions made on a kept saga and not saved yet (at most one group at a time).</summary>
    internal Group? Open => _open;

    internal bool IsOpen(Group group) => ReferenceEquals(_open, group);

    internal bool ShouldPassOn(Group group) => Volatile.Read(ref _waiting) > 0 && group.Members < MaxGroup;

    /// <summary>Starts a group on a saga as it is saved at <paramref name="fingerprint"/>.</summary>
    internal Group OpenGroup(TSaga saga, byte[] fingerprint) => _open = new Group(saga, saga.Version, fingerprint);

    /// <summary>Keeps a saga just created, as saved.</summary>
    internal void Keep(TSaga saga) => _kept[saga.CorrelationId] = new Kept(saga, Fingerprint(saga));

    /// <summary>Hands the kept copy to the message whose turn it is; it is kept again only once a group saved it.</summary>
    internal Kept? Take(Guid correlationId) => _kept.Remove(correlationId, out var kept) ? kept : null;

    /// <summary>Saves the open group's decisions in one write; then every message of the group may complete.</summary>
    internal async Task SaveOpenAsync(DbContext db, CancellationToken cancellationToken)
    {
        var group = _open ?? throw new InvalidOperationException("no group to save");
        _open = null;
        try
        {
            var fingerprint = Fingerprint(group.Saga);
            if (!fingerprint.AsSpan().SequenceEqual(group.SavedFingerprint))
            {
                group.Saga.Version = group.SavedVersion + 1;
                var entry = db.Attach(group.Saga);
                entry.State = EntityState.Modified;
                entry.Property(x => x.Version).OriginalValue = group.SavedVersion;
                await db.SaveChangesAsync(cancellationToken).CountingConflicts<TSaga>();
                entry.State = EntityState.Detached;
            }

            _kept[group.Saga.CorrelationId] = new Kept(group.Saga, fingerprint);
            group.Complete(null);
        }
        catch (Exception e)
        {
            group.Complete(e);
            throw;
        }
    }

    /// <summary>A message of the open group failed halfway: none of the group's decisions is saved, each runs again.</summary>
    internal void Abandon(Group group)
    {
        _open = null;
        group.Complete(new DbUpdateConcurrencyException("a message deciding in the same group failed halfway; running again on the saved saga"));
    }

    /// <summary>Waits for the group this message decided in to be saved, and saves it itself if nobody else does.</summary>
    internal async Task SavedAsync(Group group, DbContext db, CancellationToken cancellationToken)
    {
        while (await Task.WhenAny(group.Saved, Task.Delay(HandOverTimeout, cancellationToken)) != group.Saved)
        {
            // The message that was to decide next gave up waiting for its turn (shutting down): save the group here.
            await EnterAsync(cancellationToken);
            try
            {
                if (IsOpen(group))
                {
                    await SaveOpenAsync(db, cancellationToken);
                }
            }
            finally
            {
                Leave();
            }
        }

        if (group.Failure is { } failure)
        {
            throw failure is DbUpdateConcurrencyException || DbConflicts.IsConflict(failure.GetBaseException())
                ? new DbUpdateConcurrencyException("the save of this message's group lost on the version: running again", failure)
                : new InvalidOperationException("the save of this message's group failed", failure);
        }
    }

    /// <summary>A saga as saved, and a hash of its content without the version (to tell whether a group changed it).</summary>
    internal sealed record Kept(TSaga Saga, byte[] Fingerprint);

    /// <summary>Which group a message joined, if any (one per message).</summary>
    internal sealed class Turn
    {
        public Group? Group { get; private set; }

        public void Join(Group group)
        {
            group.Members++;
            Group = group;
        }
    }

    /// <summary>Decisions made one after another on one kept saga, saved together.</summary>
    internal sealed class Group(TSaga saga, int savedVersion, byte[] savedFingerprint)
    {
        readonly TaskCompletionSource _saved = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TSaga Saga { get; } = saga;
        public int SavedVersion { get; } = savedVersion;
        public byte[] SavedFingerprint { get; } = savedFingerprint;
        public int Members { get; set; }
        public Task Saved => _saved.Task;
        public Exception? Failure { get; private set; }

        public void Complete(Exception? failure)
        {
            Failure = failure;
            _saved.TrySetResult();
        }
    }

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
