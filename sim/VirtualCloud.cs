using DynamicWorkers.Cloud;
using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.Simulator;

/// <summary>
/// The cloud on the virtual clock: a VM takes a provisioning time drawn between 3 and 20 minutes; during the outage a
/// create fails after a minute; trust takes half a minute, a delete a minute.
/// </summary>
public sealed class VirtualCloud(VirtualClock clock, SimulationPlan plan) : IWorkerCloud
{
    static readonly TimeSpan TrustTime = TimeSpan.FromSeconds(30);
    static readonly TimeSpan DeleteTime = TimeSpan.FromMinutes(1);
    static readonly TimeSpan FailedCreateTime = TimeSpan.FromMinutes(1);

    readonly Random _random = new(plan.Seed);
    readonly PriorityQueue<object, DateTimeOffset> _answers = new();
    int _created;

    public int Created => _created;

    public void Provision(ProvisionWorker command)
    {
        var now = clock.GetUtcNow();
        if (plan.InOutage(now))
        {
            Answer(now + FailedCreateTime,
                new WorkerProvisioningFailed(command.WorkerId, "simulated outage: the cloud refuses to create VMs"));
            return;
        }

        double minutes;
        lock (_random)
        {
            minutes = plan.ProvisioningMinMinutes
                + _random.NextDouble() * (plan.ProvisioningMaxMinutes - plan.ProvisioningMinMinutes);
        }

        var ready = now + TimeSpan.FromMinutes(minutes);
        var number = Interlocked.Increment(ref _created);
        Answer(ready, new WorkerProvisioned(command.WorkerId,
            $"10.{number / 65536 % 256}.{number / 256 % 256}.{number % 256}:10933", new string('A', 40), ready));
    }

    public void Trust(TrustWorker command)
        => Answer(clock.GetUtcNow() + TrustTime,
            new WorkerTrusted(command.WorkerId, command.LeaseId, command.InstanceId, new string('B', 40)));

    public void Delete(DeprovisionWorker command)
        => Answer(clock.GetUtcNow() + DeleteTime, new WorkerDeprovisioned(command.WorkerId));

    /// <summary>The lease service's health read before a re-use: no simulated VM dies.</summary>
    public Task<VmHealth> CheckAsync(Guid workerId, CancellationToken cancellationToken)
        => Task.FromResult(VmHealth.Running);

    // The simulation drives VMs with the cloud consumers' messages; only the health read is called directly.
    public Task<CloudVm> CreateAsync(Guid workerId, VmSpec spec, CancellationToken cancellationToken)
        => throw new NotSupportedException();

    public Task<string> TrustAsync(Guid workerId, string instanceId, string thumbprint,
        CancellationToken cancellationToken) => throw new NotSupportedException();

    public Task DeleteAsync(Guid workerId, CancellationToken cancellationToken) => throw new NotSupportedException();

    public Task<IReadOnlyList<CloudVm>> ListAsync(CancellationToken cancellationToken)
        => throw new NotSupportedException();

    void Answer(DateTimeOffset at, object message)
    {
        lock (_answers)
        {
            _answers.Enqueue(message, at);
        }
    }

    public DateTimeOffset? NextDue
    {
        get
        {
            lock (_answers)
            {
                return _answers.TryPeek(out _, out var at) ? at : null;
            }
        }
    }

    public async Task AnswerDueAsync(IPublishEndpoint bus)
    {
        while (true)
        {
            object message;
            lock (_answers)
            {
                if (!_answers.TryPeek(out message!, out var at) || at > clock.GetUtcNow())
                {
                    return;
                }

                _answers.Dequeue();
            }

            await bus.Publish(message, message.GetType());
        }
    }
}

public sealed class VirtualProvisionConsumer(VirtualCloud cloud) : IConsumer<ProvisionWorker>
{
    public Task Consume(ConsumeContext<ProvisionWorker> context)
    {
        cloud.Provision(context.Message);
        return Task.CompletedTask;
    }
}

public sealed class VirtualTrustConsumer(VirtualCloud cloud) : IConsumer<TrustWorker>
{
    public Task Consume(ConsumeContext<TrustWorker> context)
    {
        cloud.Trust(context.Message);
        return Task.CompletedTask;
    }
}

public sealed class VirtualDeprovisionConsumer(VirtualCloud cloud) : IConsumer<DeprovisionWorker>
{
    public Task Consume(ConsumeContext<DeprovisionWorker> context)
    {
        cloud.Delete(context.Message);
        return Task.CompletedTask;
    }
}
