using DynamicWorkers.Cloud;
using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.IntegrationTests.Support;
using Microsoft.Extensions.Options;
using Npgsql;

namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>
/// Each invariant's check can fail: a clean run's observations pass, and each test plants one violation (a double
/// grant, a second trust, a leaked VM, a lost or doubled answer, a lost timer, a stopped consumer) into
/// observations built as the real runs build them (the ledger's record types, the database readers over planted
/// rows, the real simulated cloud) and shows the <see cref="InvariantChecker"/> reports it.
/// </summary>
public sealed class InvariantCheckerTests(PostgresTestDatabase database) : IClassFixture<PostgresTestDatabase>,
    IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    static readonly DateTimeOffset T0 = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);

    readonly LeaseLedger _ledger = new();
    readonly List<CloudRecord> _cloud = [];

    public async Task InitializeAsync()
    {
        // The columns the reader takes from the service's own tables, with rows planted per test.
        await ExecuteAsync("""
            DROP TABLE IF EXISTS leases; DROP TABLE IF EXISTS workers;
            CREATE TABLE leases ("CorrelationId" uuid PRIMARY KEY, "InstanceId" text NOT NULL, "CurrentState" text NOT NULL, "WorkerId" uuid,
                                 "GrantedAt" timestamptz, "EndedAt" timestamptz, "AllocationTimeoutToken" uuid);
            CREATE TABLE workers ("CorrelationId" uuid PRIMARY KEY, "CurrentState" text NOT NULL);
            """);
    }

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task A_clean_run_has_no_violation()
    {
        var worker = Vm("instance-a");
        await LeaseAsync("instance-a", worker, T0, T0.AddSeconds(1));
        await LeaseAsync("instance-a", worker, T0.AddSeconds(2), T0.AddSeconds(3));

        Assert.Empty(await CheckAsync());
    }

    [Fact]
    public async Task A_worker_granted_to_a_second_lease_before_the_first_ended_is_reported()
    {
        var worker = Vm("instance-a");
        var first = await LeaseAsync("instance-a", worker, T0, T0.AddSeconds(5));

        // The client recorded its release before the second grant: only the service's end time shows the overlap.
        _ledger.Released(first);
        var second = await LeaseAsync("instance-a", worker, T0.AddSeconds(2), T0.AddSeconds(6));

        Assert.Contains(await CheckAsync(),
            v => v.Contains($"lease {second} granted") && v.Contains($"lease {first} still held it"));
    }

    [Fact]
    public async Task A_vm_asked_to_trust_a_second_instance_is_reported_though_the_cloud_refused()
    {
        // The real simulated cloud and its reader: the second instance's command is refused, and logged.
        var cloud = new SimulatedCloud(
            SimulatedCloudDbContext.CreateOptions(new DatabaseOptions { Provider = DatabaseProvider.Postgres,
                ConnectionString = database.ConnectionString }),
            Options.Create(new SimulatedCloudOptions { ProvisionDelay = TimeSpan.Zero, TrustDelay = TimeSpan.Zero,
                DeleteDelay = TimeSpan.Zero }));
        var workerId = Guid.NewGuid();
        await cloud.CreateAsync(workerId, new VmSpec(Pool, "image", "size"), CancellationToken.None);
        await cloud.TrustAsync(workerId, "instance-a", LifecycleCluster.ThumbprintOf("instance-a"),
            CancellationToken.None);
        var refused = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.TrustAsync(workerId, "instance-b", LifecycleCluster.ThumbprintOf("instance-b"),
                CancellationToken.None));
        Assert.Equal(SimulatedCloud.AlreadyTrustsAnotherInstance, refused.Reason);

        var records = await ServiceRecords.ReadSimulatedCloudAsync(database.ConnectionString);

        Assert.Equal(["instance-a"], Assert.Single(records, r => r.WorkerId == workerId).TrustedInstances);
        Assert.Contains(InvariantChecker.Check(_ledger, records, ServiceRecord.Empty, expectAllDeleted: false),
            v => v.Contains($"VM {workerId} was asked to trust instance-a, instance-b"));
    }

    [Fact]
    public async Task A_vm_never_deleted_is_reported()
    {
        var worker = Vm("instance-a", deleted: false);
        await LeaseAsync("instance-a", worker, T0, T0.AddSeconds(1));

        Assert.Contains(await CheckAsync(), v => v == $"VM {worker} was never deleted");
    }

    [Fact]
    public async Task A_lost_answer_and_a_doubled_answer_are_reported()
    {
        var worker = Vm("instance-a");
        var answered = await LeaseAsync("instance-a", worker, T0, T0.AddSeconds(1));
        var unanswered = Request("instance-a");
        await PlantLeaseRowAsync(unanswered, "instance-a", "Allocating", null, null, null);
        _ledger.Answered(
            new LeaseRejected(answered, "instance-a", LeaseRejectionReasons.NoCapacity, "planted second answer"));

        var violations = await CheckAsync();

        Assert.Contains(violations, v => v == $"lease {unanswered} of instance-a: no outcome");
        Assert.Contains(violations,
            v => v.StartsWith($"lease {answered}: 2 different outcomes", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_lost_lease_a_timer_left_behind_and_a_worker_left_are_reported()
    {
        var worker = Vm("instance-a");
        await LeaseAsync("instance-a", worker, T0, T0.AddSeconds(1));
        var lost = Request("instance-a");
        _ledger.Answered(
            new LeaseRejected(lost, "instance-a", LeaseRejectionReasons.NoCapacity, "answered, then its row was lost"));
        var timed = Request("instance-a");
        _ledger.Answered(
            new LeaseRejected(timed, "instance-a", LeaseRejectionReasons.NoCapacity, "answered, timer kept"));
        await PlantLeaseRowAsync(timed, "instance-a", "Rejected", null, null, T0.AddSeconds(2), timer: true);
        var left = Guid.NewGuid();
        await ExecuteAsync($"INSERT INTO workers VALUES ('{left}', 'Ready')");

        var violations = await CheckAsync();

        Assert.Contains(violations, v => v == $"lease {lost} of instance-a: no lease row (lost)");
        Assert.Contains(violations, v => v == $"lease {timed} (Rejected) still holds its allocation timer");
        Assert.Contains(violations, v => v == $"worker {left} Ready left with its timers");
    }

    [Fact]
    public async Task A_queue_whose_consumer_stopped_is_reported()
    {
        var worker = Vm("instance-a");
        await LeaseAsync("instance-a", worker, T0, T0.AddSeconds(1));
        var consumers = new Dictionary<string, uint> { ["lease-state"] = 2, ["pool-keeper"] = 0 };

        var violations = InvariantChecker.Check(_ledger, _cloud,
            await ServiceRecords.ReadAsync(database.ConnectionString, consumers), expectAllDeleted: true);

        Assert.Equal(["queue pool-keeper has no consumer: its consumer stopped"], violations);
    }

    async Task<IReadOnlyList<string>> CheckAsync()
        => InvariantChecker.Check(_ledger, _cloud, await ServiceRecords.ReadAsync(database.ConnectionString),
            expectAllDeleted: true);

    /// <summary>A VM the cloud recorded as trusting <paramref name="instance"/> (and deleted, unless told
    /// otherwise).</summary>
    Guid Vm(string instance, bool deleted = true)
    {
        var workerId = Guid.NewGuid();
        _cloud.Add(new CloudRecord(workerId, deleted, [new TrustAttempt(instance, Accepted: true)]));
        return workerId;
    }

    Guid Request(string instance)
    {
        var request =
            new LeaseRequested(Guid.NewGuid(), instance, LifecycleCluster.ThumbprintOf(instance), Pool, "task", T0);
        _ledger.Requested(request);
        return request.LeaseId;
    }

    /// <summary>A lease requested, granted and released as a run records it: the client's ledger and the service's
    /// row.</summary>
    async Task<Guid> LeaseAsync(string instance, Guid workerId, DateTimeOffset grantedAt, DateTimeOffset endedAt)
    {
        var leaseId = Request(instance);
        _ledger.Answered(new LeaseGranted(leaseId, instance, workerId, "10.0.0.1:10933", "AGENT", false, grantedAt,
            grantedAt.AddMinutes(10)));
        await PlantLeaseRowAsync(leaseId, instance, "Released", workerId, grantedAt, endedAt);
        _ledger.Released(leaseId);
        return leaseId;
    }

    async Task PlantLeaseRowAsync(Guid leaseId, string instance, string state, Guid? workerId,
        DateTimeOffset? grantedAt, DateTimeOffset? endedAt, bool timer = false)
    {
        await using var connection = new NpgsqlConnection(database.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "INSERT INTO leases VALUES (@id, @instance, @state, @worker, @granted, @ended, @timer)", connection);
        command.Parameters.AddWithValue("id", leaseId);
        command.Parameters.AddWithValue("instance", instance);
        command.Parameters.AddWithValue("state", state);
        command.Parameters.AddWithValue("worker", (object?)workerId ?? DBNull.Value);
        command.Parameters.AddWithValue("granted", (object?)grantedAt ?? DBNull.Value);
        command.Parameters.AddWithValue("ended", (object?)endedAt ?? DBNull.Value);
        command.Parameters.AddWithValue("timer", timer ? (object)Guid.NewGuid() : DBNull.Value);
        await command.ExecuteNonQueryAsync();
    }

    Task ExecuteAsync(string sql) => PostgresQueries.ScalarAsync(database.ConnectionString, sql + "; SELECT 0");
}
