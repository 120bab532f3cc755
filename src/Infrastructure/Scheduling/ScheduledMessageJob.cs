using System.Globalization;
using System.Net.Mime;
using System.Text.Json;
using MassTransit;
using MassTransit.Serialization;
using Quartz;
using Keys = DynamicWorkers.Infrastructure.Scheduling.ScheduledMessageData;

namespace DynamicWorkers.Infrastructure.Scheduling;

/// <summary>
/// Fired by a due trigger: sends the stored envelope to its destination unchanged (message types, ids,
/// headers), adding <c>MT-Scheduling-TokenId</c> so a saga's <c>Schedule(...)</c> recognises its own timeout.
/// Delivery is at least once: a node killed after sending and before completing the job sends again on recovery.
/// </summary>
public sealed class ScheduledMessageJob(IBus bus) : IJob
{
    public async ValueTask Execute(IJobExecutionContext context, CancellationToken cancellationToken = default)
    {
        var data = context.MergedJobDataMap;
        var destination = new Uri(data.GetString(Keys.Destination)!);
        var endpoint = await bus.GetSendEndpoint(destination);
        try
        {
            await endpoint.Send(new SerializedMessageBody(), new ForwardPipe(context, data, destination),
                cancellationToken);
        }
        catch (Exception e)
        {
            // Quartz retries the trigger with its retry policy (broker restarting, say).
            throw new JobExecutionException(
                $"sending scheduled message {data.GetString(Keys.TokenId)} to {destination} failed", e);
        }
    }

    sealed class ForwardPipe(IJobExecutionContext job, JobDataMap data, Uri destination) : IPipe<SendContext>
    {
        public Task Send(SendContext context)
        {
            var headers = Headers();
            var contentType = new ContentType(data.GetString(Keys.ContentType)!);
            var deserializer = context.Serialization.GetMessageDeserializer(contentType);
            var serializerContext = deserializer.Deserialize(deserializer.GetMessageBody(data.GetString(Keys.Body)!),
                headers, destination);

            context.MessageId = GuidOf(Keys.MessageId) ?? context.MessageId;
            context.RequestId = GuidOf(Keys.RequestId);
            context.ConversationId = GuidOf(Keys.ConversationId);
            context.CorrelationId = GuidOf(Keys.CorrelationId);
            context.InitiatorId = GuidOf(Keys.InitiatorId);
            context.SourceAddress = UriOf(Keys.SourceAddress);
            context.ResponseAddress = UriOf(Keys.ResponseAddress);
            context.FaultAddress = UriOf(Keys.FaultAddress);
            if (data.TryGetString(Keys.ExpirationTime, out var expiration) && expiration is not null)
            {
                var at = DateTime.Parse(expiration, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind)
                    .ToUniversalTime();
                context.TimeToLive = at - DateTime.UtcNow;
            }

            foreach (var header in headers.GetAll())
            {
                context.Headers.Set(header.Key, header.Value);
            }

            context.Serializer = serializerContext.GetMessageSerializer();
            return Task.CompletedTask;
        }

        public void Probe(ProbeContext context) => context.CreateFilterScope("scheduled-message");

        DictionarySendHeaders Headers()
        {
            var headers = new DictionarySendHeaders();
            if (data.TryGetString(Keys.Headers, out var json) && !string.IsNullOrEmpty(json))
            {
                foreach (var (key, value) in JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(json,
                    SystemTextJsonMessageSerializer.Options)!)
                {
                    headers.Set(key, value.ValueKind switch
                    {
                        JsonValueKind.String => value.GetString(),
                        JsonValueKind.True => true,
                        JsonValueKind.False => false,
                        JsonValueKind.Number => value.TryGetInt64(out var l) ? l : value.GetDouble(),
                        JsonValueKind.Null => null,
                        _ => value.GetRawText(),
                    });
                }
            }

            headers.Set(MessageHeaders.Quartz.Sent, job.FireTimeUtc);
            if (job.ScheduledFireTimeUtc is { } scheduled)
            {
                headers.Set(MessageHeaders.Quartz.Scheduled, scheduled);
            }

            headers.Set(MessageHeaders.SchedulingTokenId, data.GetString(Keys.TokenId));
            return headers;
        }

        Guid? GuidOf(string key) => data.TryGetString(key, out var s) && Guid.TryParse(s, out var g) ? g : null;

        Uri? UriOf(string key) => data.TryGetString(key, out var s) && !string.IsNullOrEmpty(s) ? new Uri(s) : null;
    }
}
