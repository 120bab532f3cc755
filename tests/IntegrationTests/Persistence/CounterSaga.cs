using DynamicWorkers.Infrastructure.Persistence;
using MassTransit;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.IntegrationTests.Persistence;

// A deliberately tiny saga that makes lost updates and double inserts countable.

public sealed class CounterSaga : SagaStateMachineInstance, ISagaVersion
{
    public Guid CorrelationId { get; set; }
    public int Version { get; set; }
    public string CurrentState { get; set; } = "";
    public int Count { get; set; }
    public int Creations { get; set; }
    public int Duplicates { get; set; }
}

public sealed record Increment(Guid CounterId);

public sealed record CreateCounter(Guid CounterId);

/// <summary>Adds a thousand, then fails as bad input: none of it may ever be saved, nor undo a decision saved with
/// it.</summary>
public sealed record PoisonedIncrement(Guid CounterId);

/// <summary>Changes nothing: behind a gate, it must write nothing.</summary>
public sealed record PeekCounter(Guid CounterId);

/// <summary>Counts every attempt, retries included, so a test can tell that the race really happened.</summary>
public sealed class AttemptCounter
{
    int _attempts;

    public int Attempts => Volatile.Read(ref _attempts);

    public void Add() => Interlocked.Increment(ref _attempts);
}

public sealed class CounterStateMachine : MassTransitStateMachine<CounterSaga>
{
    public CounterStateMachine(AttemptCounter counter)
    {
        InstanceState(x => x.CurrentState);
        Event(() => Incremented, e => e.CorrelateById(m => m.Message.CounterId));
        Event(() => Created, e => e.CorrelateById(m => m.Message.CounterId));
        Event(() => Peeked, e => e.CorrelateById(m => m.Message.CounterId));
        Event(() => Poisoned, e => e.CorrelateById(m => m.Message.CounterId));

        Initially(
            When(Incremented).Then(c => { counter.Add(); c.Saga.Count++; }).TransitionTo(Active),
            When(Created).Then(c => { counter.Add(); c.Saga.Creations++; }).TransitionTo(Active));
        During(Active,
            When(Incremented).Then(c => { counter.Add(); c.Saga.Count++; }),
            When(Created).Then(c => { counter.Add(); c.Saga.Duplicates++; }),
            When(Peeked).Then(_ => counter.Add()),
            When(Poisoned).Then(c =>
            {
                counter.Add();
                c.Saga.Count += 1000;
                throw new ArgumentException("a poisoned increment");
            }));
    }

    public State Active { get; private set; } = null!;
    public Event<Increment> Incremented { get; private set; } = null!;
    public Event<CreateCounter> Created { get; private set; } = null!;
    public Event<PeekCounter> Peeked { get; private set; } = null!;
    public Event<PoisonedIncrement> Poisoned { get; private set; } = null!;
}

/// <summary>Many messages for one saga at once, on purpose: no partitioning, so only the version check stands between
/// them.</summary>
public sealed class CounterSagaDefinition : SagaDefinition<CounterSaga>
{
    public CounterSagaDefinition() => ConcurrentMessageLimit = 16;
}

public sealed class CounterDbContext(DbContextOptions options) : DbContext(options)
{
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.MapSaga<CounterSaga>("counters").Property(x => x.CurrentState).HasMaxLength(64);
    }
}
