using System.Reflection;
using System.Text.Json;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using MassTransit;
using MassTransit.Scheduling;
using MassTransit.Serialization;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>A clock that moves only when the test says so.</summary>
public sealed class ManualClock : TimeProvider
{
    DateTimeOffset _now = new(2026, 1, 5, 9, 0, 0, TimeSpan.Zero);

    public override DateTimeOffset GetUtcNow()
    {
        lock (this)
        {
            return _now;
        }
    }

    public void Advance(TimeSpan by)
    {
        lock (this)
        {
            _now += by;
        }
    }
}

/// <summary>
/// Stands in for the Quartz endpoint on the in-memory harness: keeps scheduled messages and delivers them
/// (with the scheduling token header, as Quartz does) when the test advances the <see cref="ManualClock"/>.
/// </summary>
public sealed class ManualScheduler(ManualClock clock)
{
    sealed record Entry(Guid Token, DateTimeOffset Due, Uri Destination, Type MessageType, JsonElement Payload);

    // Both contract assemblies: the timers are internal messages.
    static readonly Dictionary<string, Type> TypesByUrn = new[] { typeof(LeaseRequested), typeof(WorkerTimerDue) }
        .SelectMany(t => t.Assembly.GetTypes())
        .Where(t => t.GetCustomAttribute<MessageUrnAttribute>() is not null)
        .ToDictionary(t => MessageUrn.ForTypeString(t));

    readonly List<Entry> _pending = [];

    public int Pending
    {
        get
        {
            lock (_pending)
            {
                return _pending.Count;
            }
        }
    }

    public void Add(ScheduleMessage message)
    {
        // Keep the delay the scheduler asked for, measured against the manual clock.
        var delay = DateTime.SpecifyKind(message.ScheduledTime, DateTimeKind.Utc) - DateTime.UtcNow;
        var type = message.PayloadType.Select(u => TypesByUrn.GetValueOrDefault(u)).First(t => t is not null)!;
        lock (_pending)
        {
            _pending.RemoveAll(e => e.Token == message.CorrelationId);
            _pending.Add(new Entry(message.CorrelationId, clock.GetUtcNow() + delay, message.Destination, type, (JsonElement)message.Payload));
        }
    }

    public void Cancel(Guid token)
    {
        lock (_pending)
        {
            _pending.RemoveAll(e => e.Token == token);
        }
    }

    /// <summary>Whether a timer of this message type is armed and due by then.</summary>
    public bool HasPending(Type messageType, DateTimeOffset dueBy)
    {
        lock (_pending)
        {
            return _pending.Any(e => e.MessageType == messageType && e.Due <= dueBy);
        }
    }

    /// <summary>Loses every pending timer, as a scheduler with a wiped store would.</summary>
    public void DropAll()
    {
        lock (_pending)
        {
            _pending.Clear();
        }
    }

    /// <summary>Moves the clock and sends every message that fell due, in due order.</summary>
    public async Task AdvanceAsync(TimeSpan by, ISendEndpointProvider sender)
    {
        clock.Advance(by);
        List<Entry> due;
        lock (_pending)
        {
            due = _pending.Where(e => e.Due <= clock.GetUtcNow()).OrderBy(e => e.Due).ToList();
            _pending.RemoveAll(due.Contains);
        }

        foreach (var entry in due)
        {
            var message = entry.Payload.Deserialize(entry.MessageType, SystemTextJsonMessageSerializer.Options)!;
            var endpoint = await sender.GetSendEndpoint(entry.Destination);
            await endpoint.Send(message, entry.MessageType, Pipe.Execute<SendContext>(c => c.Headers.Set(MessageHeaders.SchedulingTokenId, entry.Token.ToString("N"))));
        }
    }
}

public sealed class ManualScheduleConsumer(ManualScheduler scheduler) : IConsumer<ScheduleMessage>
{
    public Task Consume(ConsumeContext<ScheduleMessage> context)
    {
        scheduler.Add(context.Message);
        return Task.CompletedTask;
    }
}

public sealed class ManualCancelConsumer(ManualScheduler scheduler) : IConsumer<CancelScheduledMessage>
{
    public Task Consume(ConsumeContext<CancelScheduledMessage> context)
    {
        scheduler.Cancel(context.Message.TokenId);
        return Task.CompletedTask;
    }
}
