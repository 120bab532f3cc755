using DynamicWorkers.Contracts;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>A lease's answers, built from its stored row so that a repeat is the very same answer.</summary>
public static class LeaseAnswers
{
    public const string LeaseIdConflictDetail =
        "this LeaseId belongs to another instance's lease; choose a new LeaseId";

    public static LeaseGranted GrantOf(LeaseState lease)
        => new(lease.CorrelationId, lease.InstanceId, lease.WorkerId!.Value, lease.WorkerAddress!,
            lease.WorkerThumbprint!, lease.Reused, lease.GrantedAt!.Value, lease.ExpiresAt!.Value);

    public static LeaseRejected RejectionOf(LeaseState lease)
        => new(lease.CorrelationId, lease.InstanceId, lease.RejectReason ?? LeaseRejectionReasons.NoCapacity,
            lease.RejectDetail ?? "");

    /// <summary>A lease revoked before it had a worker (its instance removed) carries an empty worker id.</summary>
    public static LeaseRevoked RevocationOf(LeaseState lease)
        => new(lease.CorrelationId, lease.InstanceId, lease.WorkerId ?? Guid.Empty, lease.RevokeReason!);

    /// <summary>Answers go to the request's response address when there is one, and are always published.</summary>
    public static async Task Answer(
        BehaviorContext<LeaseState> context, object answer, Uri? responseAddress, Guid? requestId)
    {
        await context.Publish(answer, answer.GetType());
        if (responseAddress is not null)
        {
            var endpoint = await context.GetSendEndpoint(responseAddress);
            await endpoint.Send(answer, answer.GetType(), Pipe.Execute<SendContext>(s => s.RequestId = requestId));
        }
    }

    /// <summary>Answers the instance that asked last, where a repeat of its request would be answered too.</summary>
    public static Task AnswerClient(BehaviorContext<LeaseState> context, object answer)
        => Answer(context, answer, context.Saga.ResponseAddress, context.Saga.RequestId);
}
