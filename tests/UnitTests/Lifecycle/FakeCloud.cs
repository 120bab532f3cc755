using System.Collections.Concurrent;
using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Simulator;
using MassTransit;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>
/// An instant cloud for the harness: answers at once, fails when told to, and remembers what it was asked. The
/// commands go through the fake consumers below; only the health read is called directly, as the lease service does.
/// </summary>
public sealed class FakeCloud : IWorkerCloud
{
    public volatile bool FailProvisioning;
    public volatile bool FailTrust;

    /// <summary>This many trust requests fail before the rest succeed.</summary>
    public int FailTrustTimes;

    /// <summary>Provisioning requests are held (no answer) while set: the VM "takes long".</summary>
    public volatile bool HoldProvisioning;

    /// <summary>Trust requests get no answer while set: the Run Command "hangs".</summary>
    public volatile bool HoldTrust;

    /// <summary>Deletes get no answer while set: as if the command, or its confirmation, was lost.</summary>
    public volatile bool HoldDeprovisioning;

    public ConcurrentQueue<ProvisionWorker> Provisioned { get; } = new();
    public ConcurrentQueue<TrustWorker> Trusted { get; } = new();
    public ConcurrentQueue<DeprovisionWorker> Deprovisioned { get; } = new();
    public ConcurrentQueue<ProvisionWorker> Held { get; } = new();

    /// <summary>Workers whose VM no longer runs; every other one runs.</summary>
    public ConcurrentDictionary<Guid, bool> Dead { get; } = new();

    /// <summary>Health reads fail (as in an ARM outage) while set.</summary>
    public volatile bool HealthUnknown;

    public ConcurrentQueue<Guid> HealthChecks { get; } = new();

    public Task<VmHealth> CheckAsync(Guid workerId, CancellationToken cancellationToken)
    {
        HealthChecks.Enqueue(workerId);
        return HealthUnknown
            ? Task.FromException<VmHealth>(new TimeoutException("the fake cloud does not answer"))
            : Task.FromResult(Dead.ContainsKey(workerId) ? VmHealth.NotRunning : VmHealth.Running);
    }

    public Task<CloudVm> CreateAsync(Guid workerId, VmSpec spec, CancellationToken cancellationToken)
        => throw new NotSupportedException("through FakeProvisionConsumer");

    public Task<string> TrustAsync(Guid workerId, string instanceId, string thumbprint,
        CancellationToken cancellationToken) => throw new NotSupportedException("through FakeTrustConsumer");

    public Task DeleteAsync(Guid workerId, CancellationToken cancellationToken)
        => throw new NotSupportedException("through FakeDeprovisionConsumer");

    public Task<IReadOnlyList<CloudVm>> ListAsync(CancellationToken cancellationToken)
        => throw new NotSupportedException("the harness has no sweep");
}

public sealed class FakeProvisionConsumer(FakeCloud cloud, VirtualClock clock) : IConsumer<ProvisionWorker>
{
    public async Task Consume(ConsumeContext<ProvisionWorker> context)
    {
        cloud.Provisioned.Enqueue(context.Message);
        if (cloud.HoldProvisioning)
        {
            cloud.Held.Enqueue(context.Message);
        }
        else if (cloud.FailProvisioning)
        {
            await context.Publish(new WorkerProvisioningFailed(context.Message.WorkerId, "QuotaExceeded"));
        }
        else
        {
            await context.Publish(new WorkerProvisioned(context.Message.WorkerId,
                $"10.0.0.{cloud.Provisioned.Count}:10933", new string('A', 40), clock.GetUtcNow()));
        }
    }
}

public sealed class FakeTrustConsumer(FakeCloud cloud) : IConsumer<TrustWorker>
{
    public Task Consume(ConsumeContext<TrustWorker> context)
    {
        cloud.Trusted.Enqueue(context.Message);
        if (cloud.HoldTrust)
        {
            return Task.CompletedTask;
        }

        return cloud.FailTrust || Interlocked.Decrement(ref cloud.FailTrustTimes) >= 0
            ? context.Publish(
                new WorkerTrustFailed(context.Message.WorkerId, context.Message.InstanceId, "RunCommandFailed"))
            : context.Publish(
                new WorkerTrusted(context.Message.WorkerId, context.Message.LeaseId, context.Message.InstanceId, new string('B', 40)));
    }
}

public sealed class FakeDeprovisionConsumer(FakeCloud cloud) : IConsumer<DeprovisionWorker>
{
    public Task Consume(ConsumeContext<DeprovisionWorker> context)
    {
        cloud.Deprovisioned.Enqueue(context.Message);
        return cloud.HoldDeprovisioning
            ? Task.CompletedTask : context.Publish(new WorkerDeprovisioned(context.Message.WorkerId));
    }
}
