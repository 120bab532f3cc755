using MassTransit;

namespace DynamicWorkers.Contracts.Internal;

// Between the service's own processes: the worker saga (LeaseSaga host) and the cloud consumers
// (Provisioner, Trust, Reaper). Not part of the instance-facing contract, but pinned all the same so a
// rolling upgrade never strands a message.

/// <summary>
/// The cloud consumers' queues. Their commands are sent to these queues, not published: a command sent before
/// its consumer ever started (a fresh deployment) waits in the queue instead of vanishing into an exchange
/// with nothing bound to it. Every RabbitMQ host declares them (and binds their exchanges) before its bus starts,
/// so the address names the queue's exchange: a <c>queue:</c> address would redeclare the queue without its type.
/// </summary>
public static class CloudQueues
{
    public const string ProvisionWorker = "provision-worker";
    public const string TrustWorker = "trust-worker";
    public const string DeprovisionWorker = "deprovision-worker";

    public static readonly IReadOnlyList<string> All = [ProvisionWorker, TrustWorker, DeprovisionWorker];

    public static Uri Address(string queue) => new($"exchange:{queue}");
}

/// <summary>
/// Create the VM of a worker (idempotent per worker id: a redelivery finds the VM it already started).
/// </summary>
[MessageUrn("DynamicWorkers.Internal:ProvisionWorker")]
public sealed record ProvisionWorker(Guid WorkerId, string Pool, string Image, string Size);

[MessageUrn("DynamicWorkers.Internal:WorkerProvisioned")]
public sealed record WorkerProvisioned(Guid WorkerId, string Address, string AgentThumbprint,
    DateTimeOffset ProvisionedAt);

/// <summary>The VM could not be created; <see cref="Reason"/> carries the cloud's error code.</summary>
[MessageUrn("DynamicWorkers.Internal:WorkerProvisioningFailed")]
public sealed record WorkerProvisioningFailed(Guid WorkerId, string Reason);

/// <summary>
/// Make the worker's agent trust exactly this instance's thumbprint (and no other, ever), for the lease
/// <see cref="LeaseId"/>, which gets the answer.
/// </summary>
[MessageUrn("DynamicWorkers.Internal:TrustWorker")]
public sealed record TrustWorker(Guid WorkerId, Guid LeaseId, string InstanceId, string Thumbprint);

/// <summary>The trust is in place: the lease it was for is granted.</summary>
[MessageUrn("DynamicWorkers.Internal:WorkerTrusted")]
public sealed record WorkerTrusted(Guid WorkerId, Guid LeaseId, string InstanceId, string AgentThumbprint);

[MessageUrn("DynamicWorkers.Internal:WorkerTrustFailed")]
public sealed record WorkerTrustFailed(Guid WorkerId, string InstanceId, string Reason);

/// <summary>Delete the VM, NIC and disk included (idempotent: a VM already gone counts as deleted).</summary>
[MessageUrn("DynamicWorkers.Internal:DeprovisionWorker")]
public sealed record DeprovisionWorker(Guid WorkerId, string Reason);

[MessageUrn("DynamicWorkers.Internal:WorkerDeprovisioned")]
public sealed record WorkerDeprovisioned(Guid WorkerId);
