using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>
/// Isolation between instances (invariant 2), on the real broker with the services as processes: a release from
/// an instance that does not own the lease changes nothing and is logged as a warning; an instance that reuses
/// another's lease id learns nothing about that lease's worker; a worker that trusted instance A never serves B,
/// even after A's lifecycle settings change and even when the pool is at its maximum with workers idle for A and B: a
/// third instance then gets a new worker (A's, idle longest, is retired for it), never one of theirs.
/// </summary>
public sealed class IsolationTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";

    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "1",
        [$"Pools:{Pool}:MaxWorkers"] = "2",
        [$"Pools:{Pool}:AllocationTimeout"] = "00:00:30",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:IdleTimeout"] = "00:10:00",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.200",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.050",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.050",
    }).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString,
            ["LeaseSaga", "Provisioner", "Trust"]);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task No_instance_can_release_learn_or_use_another_instance_s_worker()
    {
        var a = await LeaseAsync("instance-a");

        // A release from B: nothing changes, and the service says so.
        await _cluster.Bus.Publish(new LeaseReleased(a.LeaseId, "instance-b"));
        var leaseSaga = _cluster.Services.Single(s => s.Project == "LeaseSaga");
        await Eventually.True(() => leaseSaga.Output.Contains($"release from instance-b ignored"),
            TimeSpan.FromSeconds(30), "the warning", () => leaseSaga.Output);
        Assert.Contains("warn:", leaseSaga.Output);
        Assert.Equal(1, await _cluster.ScalarAsync(
            $"SELECT count(*) FROM leases WHERE \"CorrelationId\" = '{a.LeaseId}' AND \"CurrentState\" = 'Granted'"));
        Assert.Equal(1, await _cluster.ScalarAsync($"SELECT count(*) FROM workers WHERE \"CorrelationId\" = "
            + $"'{a.WorkerId}' AND \"CurrentState\" = 'Leased' AND \"CurrentLeaseId\" = '{a.LeaseId}'"));

        // B asks with A's lease id, through a request client: a conflict, with nothing about A's worker in it.
        var client = _cluster.Bus.CreateRequestClient<LeaseRequested>(RequestTimeout.After(s: 30));
        var answer = await client.GetResponse<LeaseGranted, LeaseRejected>(
            new LeaseRequested(a.LeaseId, "instance-b", LifecycleCluster.ThumbprintOf("instance-b"), Pool, null,
                DateTimeOffset.UtcNow));
        Assert.True(answer.Is(out Response<LeaseRejected>? conflict), "B must not be granted A's lease");
        Assert.Equal((LeaseRejectionReasons.LeaseIdConflict, "instance-b"),
            (conflict!.Message.Reason, conflict.Message.InstanceId));
        Assert.DoesNotContain(a.WorkerId.ToString(), conflict.Message.Detail);
        Assert.DoesNotContain(a.WorkerAddress, conflict.Message.Detail);
        Assert.DoesNotContain("instance-a", conflict.Message.Detail);

        // A's worker goes idle, still trusting A; A's settings change; B must get another worker.
        await ReleaseAsync(a);
        await _cluster.Bus.Publish(
            new SetInstanceLifecycle("instance-a", TimeSpan.FromHours(2), TimeSpan.FromDays(3), TimeSpan.FromHours(1)));
        var b = await LeaseAsync("instance-b");
        Assert.NotEqual(a.WorkerId, b.WorkerId);
        await ReleaseAsync(b);
        await _cluster.Bus.Publish(new SetInstanceLifecycle("instance-a", TimeSpan.FromMinutes(30), null, null));

        // Each instance re-uses its own worker.
        var a2 = await LeaseAsync("instance-a");
        Assert.Equal(a.WorkerId, a2.WorkerId);
        await ReleaseAsync(a2);
        var b2 = await LeaseAsync("instance-b");
        Assert.Equal(b.WorkerId, b2.WorkerId);
        await ReleaseAsync(b2);

        // The pool is at its maximum with both workers idle for their own instances: C gets a new worker, never theirs;
        // A's, idle longest, is retired to make room (no Reaper runs here, so it stays being deleted).
        var c = await LeaseAsync("instance-c");
        Assert.DoesNotContain(c.WorkerId, new[] { a.WorkerId, b.WorkerId });
        Assert.Equal(1, await _cluster.ScalarAsync($"SELECT count(*) FROM workers WHERE \"CorrelationId\" = "
            + $"'{a.WorkerId}' AND \"CurrentState\" = 'Reaping' AND \"ReapReason\" = 'idle'"));
        Assert.Equal(1, await _cluster.ScalarAsync(
            $"SELECT count(*) FROM workers WHERE \"CorrelationId\" = '{b.WorkerId}' AND \"CurrentState\" = 'Idle'"));

        var cloud = await _cluster.CloudAsync();
        Assert.Equal(["instance-a"], cloud.Single(v => v.WorkerId == a.WorkerId).TrustedInstances.Distinct());
        Assert.Equal(["instance-b"], cloud.Single(v => v.WorkerId == b.WorkerId).TrustedInstances.Distinct());
        var violations =
            InvariantChecker.Check(_cluster.Ledger, cloud, await _cluster.ServiceAsync(), expectAllDeleted: false);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }

    async Task<LeaseGranted> LeaseAsync(string instance)
    {
        var request = new LeaseRequested(NewId.NextGuid(), instance, LifecycleCluster.ThumbprintOf(instance), Pool,
            null, DateTimeOffset.UtcNow);
        _cluster.Ledger.Requested(request);
        await _cluster.Bus.Publish(request);
        await Eventually.True(() => _cluster.Ledger.OutcomesOf(request.LeaseId).Count > 0, TimeSpan.FromSeconds(60),
            $"{instance}'s outcome", _cluster.Diagnostics);
        var outcome = _cluster.Ledger.OutcomesOf(request.LeaseId)[0];
        return outcome as LeaseGranted
            ?? throw new Xunit.Sdk.XunitException($"{instance}: {outcome}\n{_cluster.Diagnostics()}");
    }

    async Task ReleaseAsync(LeaseGranted grant)
    {
        _cluster.Ledger.Released(grant.LeaseId);
        await _cluster.Bus.Publish(new LeaseReleased(grant.LeaseId, grant.InstanceId));
        await Eventually.True(
            async () => await _cluster.ScalarAsync($"SELECT count(*) FROM workers WHERE \"CorrelationId\" = "
                + $"'{grant.WorkerId}' AND \"CurrentState\" = 'Idle'") == 1,
            TimeSpan.FromSeconds(30), "the worker idle", _cluster.Diagnostics);
    }
}
