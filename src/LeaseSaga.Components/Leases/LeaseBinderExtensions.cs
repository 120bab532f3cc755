using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>The lease's steps as the lease machine names them in its flow.</summary>
public static class LeaseBinderExtensions
{
    static readonly Uri TrustQueue = CloudQueues.Address(CloudQueues.TrustWorker);

    public static EventActivityBinder<LeaseState, T> AnswerGrantAgain<T>(
        this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.ThenAsync(c => LeaseAnswers.AnswerClient(c, LeaseAnswers.GrantOf(c.Saga)));

    public static EventActivityBinder<LeaseState, T> AnswerRejectionAgain<T>(
        this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.ThenAsync(c => LeaseAnswers.AnswerClient(c, LeaseAnswers.RejectionOf(c.Saga)));

    public static EventActivityBinder<LeaseState, T> PublishRevocationAgain<T>(
        this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.Publish(c => LeaseAnswers.RevocationOf(c.Saga));

    /// <summary>The same id from another instance changes nothing and is told so.</summary>
    public static EventActivityBinder<LeaseState, LeaseRequested> AnswerLeaseIdConflict(
        this EventActivityBinder<LeaseState, LeaseRequested> binder)
        => binder.ThenAsync(c => LeaseAnswers.Answer(c,
            new LeaseRejected(c.Message.LeaseId, c.Message.InstanceId, LeaseRejectionReasons.LeaseIdConflict,
                LeaseAnswers.LeaseIdConflictDetail),
            c.ResponseAddress, c.RequestId));

    /// <summary>The recorded outcome once more, nothing re-run; a lease being allocated answers when it is.</summary>
    public static EventActivityBinder<LeaseState, LeaseRequested> AnswerAgain(
        this EventActivityBinder<LeaseState, LeaseRequested> binder)
        => binder
            .Then(c =>
            {
                // A retry may come from a new client: answer there from now on.
                c.Saga.ResponseAddress = c.ResponseAddress ?? c.Saga.ResponseAddress;
                c.Saga.RequestId = c.ResponseAddress is null ? c.Saga.RequestId : c.RequestId;
            })
            .ThenAsync(AnswerAgain);

    static async Task AnswerAgain(BehaviorContext<LeaseState, LeaseRequested> c)
    {
        var lease = c.Saga;
        object? outcome = lease.RejectReason is not null
            ? LeaseAnswers.RejectionOf(lease)
            : lease.GrantedAt is not null ? LeaseAnswers.GrantOf(lease) : null;
        if (outcome is not null)
        {
            await LeaseAnswers.Answer(c, outcome, c.ResponseAddress, c.RequestId);
        }
        else if (lease.WorkerId is { } workerId && lease.EndedAt is null)
        {
            // Still trusting: the TrustWorker may have died with the process that chose the worker (trusting the same
            // instance again is a no-op to the worker's agent).
            await c.Send(TrustQueue,
                new TrustWorker(workerId, lease.CorrelationId, lease.InstanceId, lease.ServerThumbprint));
        }
    }
}
