using System.Collections.Concurrent;
using DynamicWorkers.Contracts;
using MassTransit;
using MassTransit.Scheduling;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// Which message the bed loses: the first one that matches, once. It is lost as it reaches its queue, before any
/// consumer sees it, and acknowledged: to the system it is a message that never arrived and is never redelivered.
/// </summary>
public sealed class DropPlan
{
    Func<ConsumeContext, bool>? _match;
    int _dropped;

    /// <summary>What is dropped, as the test names it.</summary>
    public string? Target { get; private set; }

    /// <summary>How many messages were dropped: the test asserts the drop happened.</summary>
    public int Dropped => Volatile.Read(ref _dropped);

    public void Arm(string target, Func<ConsumeContext, bool> match)
    {
        lock (this)
        {
            (Target, _match, _dropped) = (target, match, 0);
        }
    }

    public bool ShouldDrop(ConsumeContext context)
    {
        lock (this)
        {
            if (_match is null || _dropped > 0 || !_match(context))
            {
                return false;
            }

            _dropped++;
            return true;
        }
    }

    /// <summary>A message of type <typeparamref name="T"/> as it arrives at its consumer.</summary>
    public static Func<ConsumeContext, bool> Of<T>()
        where T : class
        => c => c.HasMessageType(typeof(T));

    /// <summary>The schedule of a timer of type <typeparamref name="T"/> as it reaches the scheduler: the timer is
    /// never stored.</summary>
    public static Func<ConsumeContext, bool> ScheduleOf<T>()
        where T : class
    {
        var urn = MessageUrn.ForTypeString<T>();
        return c => c.TryGetMessage<ScheduleMessage>(out var schedule) && schedule.Message.PayloadType.Contains(urn);
    }
}

/// <summary>Outermost on every endpoint of the bed: loses the message the <see cref="DropPlan"/> names.</summary>
public sealed class DropFilter(DropPlan plan) : IFilter<ConsumeContext>
{
    public Task Send(ConsumeContext context, IPipe<ConsumeContext> next)
        => plan.ShouldDrop(context) ? Task.CompletedTask : next.Send(context);

    public void Probe(ProbeContext context) => context.CreateFilterScope("drop");
}

/// <summary>What the instance actually received of the public answers (a dropped one never arrives here).</summary>
public sealed class ClientInbox
{
    public ConcurrentQueue<object> Received { get; } = new();

    public List<object> Outcomes(Guid leaseId)
        => Received.Where(
            m => m is LeaseGranted g && g.LeaseId == leaseId || m is LeaseRejected r && r.LeaseId == leaseId).ToList();

    public List<LeaseRevoked> Revocations(Guid leaseId)
        => Received.OfType<LeaseRevoked>().Where(r => r.LeaseId == leaseId).ToList();
}

/// <summary>The instance's own queue, bound to the public answers as a client subscribes to them.</summary>
public sealed class FakeClientConsumer(ClientInbox inbox) : IConsumer<LeaseGranted>, IConsumer<LeaseRejected>,
    IConsumer<LeaseRevoked>
{
    public Task Consume(ConsumeContext<LeaseGranted> context) => Record(context.Message);

    public Task Consume(ConsumeContext<LeaseRejected> context) => Record(context.Message);

    public Task Consume(ConsumeContext<LeaseRevoked> context) => Record(context.Message);

    Task Record(object message)
    {
        inbox.Received.Enqueue(message);
        return Task.CompletedTask;
    }
}
