using System.Text.Json;
using MassTransit;
using MassTransit.Context;
using MassTransit.Scheduling;
using MassTransit.Serialization;
using Quartz;
using Keys = DynamicWorkers.Infrastructure.Scheduling.ScheduledMessageData;

namespace DynamicWorkers.Infrastructure.Scheduling;

/// <summary>
/// Stores a <see cref="ScheduleMessage"/> as a Quartz trigger in the persistent job store. The trigger is
/// named by the schedule's token id, so <see cref="CancelScheduledMessageConsumer"/> finds it. An existing
/// trigger of that name is kept: it is either this same schedule redelivered, or the tombstone of a cancel
/// that overtook it (both are in the queue at once, and consumers run concurrently). A schedule not due soon is first
/// held for its cancel (<see cref="HeldSchedules"/>): one cancelled meanwhile is never stored. A schedule that replaces
/// another (<see cref="ScheduleReplacement"/>) removes it first.
/// </summary>
public sealed class ScheduleMessageConsumer(ISchedulerFactory schedulerFactory, HeldSchedules held)
    : IConsumer<ScheduleMessage>
{
    /// <summary>
    /// A send that fails (broker down) is retried by Quartz, from the store: 1 s doubling to 30 s, 20 attempts, about
    /// eight minutes.
    /// </summary>
    static readonly RetryPolicy SendRetry = RetryPolicy.Exponential(20, TimeSpan.FromSeconds(1), 2,
        TimeSpan.FromSeconds(30));

    public async Task Consume(ConsumeContext<ScheduleMessage> context)
    {
        var message = context.Message;
        var token = message.CorrelationId.ToString("N");
        var due = AsUtc(message.ScheduledTime);
        if (context.Headers.Get<string>(ScheduleReplacement.Header) is { } replaced && !held.TryCancel(replaced))
        {
            // Within the store's slots: removing a trigger takes one of the scheduler's connections, as storing does.
            var store = await schedulerFactory.GetScheduler(context.CancellationToken);
            await held.StoreSlots.WaitAsync(context.CancellationToken);
            try
            {
                await store.UnscheduleJob(new TriggerKey(replaced), context.CancellationToken);
            }
            finally
            {
                held.StoreSlots.Release();
            }
        }

        if (await held.CancelledWhileHeldAsync(token, due, context.CancellationToken))
        {
            return;
        }

        // The payload re-serialized as a whole envelope with the original message types, ready to send as is.
        var body = context.SerializerContext
            .GetMessageSerializer(message.Payload, message.PayloadType)
            .GetMessageBody(new MessageSendContext<ScheduleMessage>(message));

        var trigger = TriggerBuilder.Create()
            .WithIdentity(new TriggerKey(token))
            .ForJob(new JobKey(Keys.JobName))
            .StartAt(due)
            .WithSchedule(SimpleScheduleBuilder.Create()
                .WithMisfireInstruction(SimpleTriggerMisfireInstruction.FireNow))
            .WithRetryPolicy(SendRetry)
            .UsingJobData(Keys.Destination, message.Destination.ToString())
            .UsingJobData(Keys.Body, body.GetString())
            .UsingJobData(Keys.ContentType, context.ReceiveContext.ContentType?.ToString()
                ?? SystemTextJsonMessageSerializer.JsonContentType.ToString())
            .UsingJobData(Keys.TokenId, token);

        void Add(string key, object? value)
        {
            if (value is not null)
            {
                trigger.UsingJobData(key, value.ToString()!);
            }
        }

        Add(Keys.MessageId, context.MessageId);
        Add(Keys.CorrelationId, context.CorrelationId);
        Add(Keys.ConversationId, context.ConversationId);
        Add(Keys.InitiatorId, context.InitiatorId);
        Add(Keys.RequestId, context.RequestId);
        Add(Keys.SourceAddress, context.SourceAddress);
        Add(Keys.ResponseAddress, context.ResponseAddress);
        Add(Keys.FaultAddress, context.FaultAddress);
        Add(Keys.ExpirationTime, context.ExpirationTime?.ToString("O"));

        // Headers set by the scheduling side travel on the ScheduleMessage envelope; keep them for the final message.
        var headers = context.Headers.GetAll().Where(x => x.Key != ScheduleReplacement.Header)
            .ToDictionary(x => x.Key, x => x.Value);
        if (headers.Count > 0)
        {
            trigger.UsingJobData(Keys.Headers, JsonSerializer.Serialize(headers,
                SystemTextJsonMessageSerializer.Options));
        }

        var scheduler = await schedulerFactory.GetScheduler(context.CancellationToken);
        await held.StoreSlots.WaitAsync(context.CancellationToken);
        try
        {
            // A plain insert, not ScheduleTrigger(…, Keep), which decides under the cluster lock: on PostgreSQL an
            // insert takes no lock (LockOnInsert), and "the name is taken" is the answer Keep would have given.
            await scheduler.ScheduleJob(trigger.Build(), cancellationToken: context.CancellationToken);
        }
        catch (ObjectAlreadyExistsException)
        {
            // This schedule redelivered, or the tombstone of a cancel that overtook it: keep what is there.
        }
        finally
        {
            held.StoreSlots.Release();
        }
    }

    /// <summary>MassTransit sends UTC; an unspecified kind must not be read as local time.</summary>
    static DateTimeOffset AsUtc(DateTime time)
        => time.Kind == DateTimeKind.Local ? new DateTimeOffset(time.ToUniversalTime())
            : new DateTimeOffset(DateTime.SpecifyKind(time, DateTimeKind.Utc));
}

/// <summary>
/// Removes the triggers of cancelled schedules, a batch under one cluster lock
/// (<see cref="QuartzEndpointOptions.CancelBatchMessageLimit"/>). Where there was none, the cancel may
/// have overtaken its schedule, so it leaves a tombstone under the token's name for an hour: the schedule, arriving
/// later, finds the name taken and is dropped. Cancelling a schedule that already fired is harmless. A schedule still
/// held in this process (<see cref="HeldSchedules"/>) is simply let go: neither is written.
/// </summary>
public sealed class CancelScheduledMessageConsumer(ISchedulerFactory schedulerFactory, HeldSchedules held)
    : IConsumer<Batch<CancelScheduledMessage>>
{
    static readonly TimeSpan TombstoneLifetime = TimeSpan.FromHours(1);

    public async Task Consume(ConsumeContext<Batch<CancelScheduledMessage>> context)
    {
        var cancellationToken = context.CancellationToken;
        // In one order, so two batches never wait on each other's rows.
        var keys = context.Message.Select(m => m.Message.TokenId.ToString("N")).Distinct().Order()
            .Where(token => !held.TryCancel(token)).Select(n => new TriggerKey(n)).ToList();
        if (keys.Count == 0)
        {
            return;
        }

        var scheduler = await schedulerFactory.GetScheduler(cancellationToken);
        var removed = (await scheduler.UnscheduleJobs(keys, cancellationToken)).ToHashSet();
        foreach (var key in keys.Where(k => !removed.Contains(k)))
        {
            var tombstone = TriggerBuilder.Create()
                .WithIdentity(key)
                .ForJob(new JobKey(ScheduledMessageData.TombstoneJobName))
                .StartAt(DateTimeOffset.UtcNow + TombstoneLifetime)
                .WithSchedule(SimpleScheduleBuilder.Create()
                    .WithMisfireInstruction(SimpleTriggerMisfireInstruction.FireNow))
                .Build();
            try
            {
                await scheduler.ScheduleJob(tombstone, cancellationToken: cancellationToken);
            }
            catch (ObjectAlreadyExistsException)
            {
                // The schedule slipped in after the removal: the tombstone replaces it (under the lock, rarely).
                await scheduler.ScheduleTrigger(tombstone, TriggerConflict.Replace, cancellationToken);
            }
        }
    }
}

/// <summary>What a cancel tombstone fires when it expires: nothing (Quartz then deletes the trigger).</summary>
public sealed class CancelledScheduleJob : IJob
{
    public ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
        => ValueTask.CompletedTask;
}
