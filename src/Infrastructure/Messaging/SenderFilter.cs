using DynamicWorkers.Contracts;
using MassTransit;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.Infrastructure.Messaging;

/// <summary>
/// On every service endpoint: a message its sender may not send changes nothing. A lease request is answered
/// <c>Unauthorized</c> (to the sender only, nothing is stored); anything else goes to the <c>_error</c> queue with the
/// reason.
/// </summary>
public sealed class SenderFilter<T>(SenderIdentity identity, ILogger<SenderIdentity> logger)
    : IFilter<ConsumeContext<T>>
    where T : class
{
    public async Task Send(ConsumeContext<T> context, IPipe<ConsumeContext<T>> next)
    {
        if (!identity.Enforced || SenderIdentity.Refusal(context.Message, identity.Of(context)) is not { } refusal)
        {
            await next.Send(context);
            return;
        }

        logger.LogWarning("Refused {MessageType} {MessageId}: {Refusal}", typeof(T).Name, context.MessageId, refusal);
        if (context.Message is LeaseRequested request)
        {
            if (context.ResponseAddress is not null)
            {
                await context.RespondAsync(new LeaseRejected(request.LeaseId, request.InstanceId,
                    LeaseRejectionReasons.Unauthorized, refusal));
            }

            return;
        }

        // Faults are sent by the consumer filter, which a refused message never reaches: a requester waits for none
        // otherwise.
        var exception = new UnauthorizedSenderException(refusal);
        await context.NotifyFaulted(context, TimeSpan.Zero, nameof(SenderFilter<T>), exception);
        throw exception;
    }

    public void Probe(ProbeContext context) => context.CreateFilterScope("sender");
}

/// <summary>
/// A message its sender may not send; bad input, so it goes to <c>_error</c> at once and a requester gets the fault.
/// </summary>
public sealed class UnauthorizedSenderException(string message) : ArgumentException(message);
