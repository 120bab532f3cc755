using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>The lease's steps as the lease machine names them in its flow.</summary>
public static class LeaseBinderExtensions
{
    static readonly Uri TrustQueue = CloudQueues.Address(CloudQueues.TrustWorker);

    /// <summary>Grants the worker chosen for the lease and answers the instance.</summary>
    public static EventActivityBinder<LeaseState, T> Grant<T>(this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.Activity(x => x.OfInstanceType<GrantLeaseActivity>());

    /// <summary>Grants the worker that trusted the instance for this lease.</summary>
    public static EventActivityBinder<LeaseState, WorkerLeased> GrantLeasedWorker(
        this EventActivityBinder<LeaseState, WorkerLeased> binder)
        => binder
            .Then(c => GrantLeaseActivity.Choose(c.Saga, c.Message.WorkerId, c.Message.Address, c.Message.AgentThumbprint,
                c.Message.Reused, c.Message.ExpiresAt))
            .Grant();

    /// <summary>Rejects the lease for the reason already chosen and answers the instance.</summary>
    public static EventActivityBinder<LeaseState, T> Reject<T>(this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.Activity(x => x.OfInstanceType<RejectLeaseActivity>());

    public static EventActivityBinder<LeaseState, RejectWaitingLease> RejectAsAsked(
        this EventActivityBinder<LeaseState, RejectWaitingLease> binder)
        => binder
            .Then(c => (c.Saga.RejectReason, c.Saga.RejectDetail) = (c.Message.Reason, c.Message.Detail))
            .Reject();

    public static EventActivityBinder<LeaseState, T> EndLease<T>(this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.Activity(x => x.OfInstanceType<EndLeaseActivity>());

    public static EventActivityBinder<LeaseState, T> AnswerGrantAgain<T>(this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.ThenAsync(c => LeaseAnswers.AnswerClient(c, LeaseAnswers.GrantOf(c.Saga)));

    public static EventActivityBinder<LeaseState, T> AnswerRejectionAgain<T>(this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.ThenAsync(c => LeaseAnswers.AnswerClient(c, LeaseAnswers.RejectionOf(c.Saga)));

    public static EventActivityBinder<LeaseState, T> PublishRevocationAgain<T>(this EventActivityBinder<LeaseState, T> binder)
        where T : class
        => binder.Publish(c => LeaseAnswers.RevocationOf(c.Saga));

    /// <summary>The same id from another instance changes nothing and is told so.</summary>
    public static EventActivityBinder<LeaseState, LeaseRequested> AnswerLeaseIdConflict(
        this EventActivityBinder<LeaseState, LeaseRequested> binder)
        => binder.ThenAsync(c => LeaseAnswers.Answer(c,
            new LeaseRejected(c.Message.LeaseId, c.Message.InstanceId, LeaseRejectionReasons.LeaseIdConflict,
                LeaseAnswers.LeaseIdConflictDetail),
            c.ResponseAddress, c.RequestId));

    /// <summary>The recorded outcome once more; nothing is re-run. A lease still being allocated answers when it is.</summary>
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
            await c.Send(TrustQueue, new TrustWorker(workerId, lease.InstanceId, lease.ServerThumbprint));
        }
    }
}
