using System.Reflection;
using System.Text.Json;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using MassTransit;
using MassTransit.Scheduling;
using MassTransit.Serialization;

namespace DynamicWorkers.Simulator;

/// <summary>The simulation's clock: it moves only when the simulation moves it, to the next thing that
/// happens.</summary>
public sealed class VirtualClock(DateTimeOffset start) : TimeProvider
{
    long _ticks = start.UtcTicks;

    public override DateTimeOffset GetUtcNow() => new(Interlocked.Read(ref _ticks), TimeSpan.Zero);

    public void MoveTo(DateTimeOffset at)
        => Interlocked.Exchange(ref _ticks, Math.Max(Interlocked.Read(ref _ticks), at.UtcTicks));

    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}

/// <summary>
/// Stands in for the Quartz endpoint: keeps scheduled messages against the virtual clock and sends them, with the
/// scheduling token header as Quartz does, once the simulation reaches their time.
/// </summary>
public sealed class VirtualScheduler(VirtualClock clock)
{
    sealed record Entry(Guid Token, DateTimeOffset Due, Uri Destination, Type MessageType, JsonElement Payload);

    // Both contract assemblies: the timers are internal messages.
    static readonly Dictionary<string, Type> TypesByUrn = new[] { typeof(LeaseRequested), typeof(WorkerTimerDue) }
        .SelectMany(t => t.Assembly.GetTypes())
        .Where(t => t.GetCustomAttribute<MessageUrnAttribute>() is not null)
        .ToDictionary(t => MessageUrn.ForTypeString(t));

    readonly List<Entry> _pending = [];

    /// <param name="sentAt">when the schedule was sent, on the real clock MassTransit turned its delay into a time
    /// with</param>
    public void Add(ScheduleMessage message, DateTime sentAt)
    {
        var delay = DateTime.SpecifyKind(message.ScheduledTime, DateTimeKind.Utc) - sentAt;
        var type = message.PayloadType.Select(u => TypesByUrn.GetValueOrDefault(u)).First(t => t is not null)!;
        lock (_pending)
        {
            _pending.RemoveAll(e => e.Token == message.CorrelationId);
            _pending.Add(new Entry(message.CorrelationId, clock.GetUtcNow() + delay, message.Destination, type,
                (JsonElement)message.Payload));
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

    public DateTimeOffset? NextDue
    {
        get
        {
            lock (_pending)
            {
                return _pending.Count == 0 ? null : _pending.Min(e => e.Due);
            }
        }
    }

    /// <summary>Sends every message due by now, in due order.</summary>
    public async Task DeliverDueAsync(ISendEndpointProvider sender)
    {
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
            await endpoint.Send(message, entry.MessageType, Pipe.Execute<SendContext>(
                c => c.Headers.Set(MessageHeaders.SchedulingTokenId, entry.Token.ToString("N"))));
        }
    }
}

public sealed class VirtualScheduleConsumer(VirtualScheduler scheduler) : IConsumer<ScheduleMessage>
{
    public Task Consume(ConsumeContext<ScheduleMessage> context)
    {
        scheduler.Add(context.Message, context.SentTime ?? DateTime.UtcNow);
        return Task.CompletedTask;
    }
}

public sealed class VirtualCancelConsumer(VirtualScheduler scheduler) : IConsumer<CancelScheduledMessage>
{
    public Task Consume(ConsumeContext<CancelScheduledMessage> context)
    {
        scheduler.Cancel(context.Message.TokenId);
        return Task.CompletedTask;
    }
}

/// <summary>
/// Whether the in-memory bus has finished with everything sent so far: no message is being received and none was
/// sent, published or received for a few milliseconds. Virtual time moves only then, so every step of the state
/// machines happens at the virtual moment that caused it.
/// </summary>
public sealed class BusActivity : IReceiveObserver, ISendObserver, IPublishObserver
{
    static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(5);
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    int _receiving;
    long _lastActivity;

    public async Task SettledAsync(CancellationToken cancellationToken)
    {
        var deadline = _clock.Elapsed + TimeSpan.FromMinutes(1);
        while (Volatile.Read(ref _receiving) > 0
            || _clock.Elapsed.Ticks - Interlocked.Read(ref _lastActivity) < Quiet.Ticks)
        {
            if (_clock.Elapsed > deadline)
            {
                throw new TimeoutException("the bus did not settle within a minute");
            }

            await Task.Delay(1, cancellationToken);
        }
    }

    void Touch() => Interlocked.Exchange(ref _lastActivity, _clock.Elapsed.Ticks);

    public Task PreReceive(ReceiveContext context)
    {
        Interlocked.Increment(ref _receiving);
        Touch();
        return Task.CompletedTask;
    }

    public Task PostReceive(ReceiveContext context)
    {
        Touch();
        Interlocked.Decrement(ref _receiving);
        return Task.CompletedTask;
    }

    public Task ReceiveFault(ReceiveContext context, Exception exception)
    {
        Touch();
        Interlocked.Decrement(ref _receiving);
        return Task.CompletedTask;
    }

    public Task PostConsume<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType)
        where T : class
        => Task.CompletedTask;

    public Task ConsumeFault<T>(ConsumeContext<T> context, TimeSpan duration, string consumerType, Exception exception)
        where T : class
        => Task.CompletedTask;

    public Task PreSend<T>(SendContext<T> context)
        where T : class
    {
        Touch();
        return Task.CompletedTask;
    }

    public Task PostSend<T>(SendContext<T> context)
        where T : class
    {
        Touch();
        return Task.CompletedTask;
    }

    public Task SendFault<T>(SendContext<T> context, Exception exception)
        where T : class
    {
        Touch();
        return Task.CompletedTask;
    }

    public Task PrePublish<T>(PublishContext<T> context)
        where T : class
    {
        Touch();
        return Task.CompletedTask;
    }

    public Task PostPublish<T>(PublishContext<T> context)
        where T : class
    {
        Touch();
        return Task.CompletedTask;
    }

    public Task PublishFault<T>(PublishContext<T> context, Exception exception)
        where T : class
    {
        Touch();
        return Task.CompletedTask;
    }
}
