using System.Net.Http.Headers;
using System.Text;
using DynamicWorkers.Client;
using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>
/// Tenants on one broker (invariant 7), with the services as processes and each instance connected as its own user
/// made by <c>dw instance add</c>: the broker refuses what an instance's user may not send, and the services refuse
/// what the broker let through but the sender may not do, changing nothing.
/// </summary>
public sealed class TenancyTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";

    // Broker users are global: a run's own names, deleted at the end.
    readonly string _a = $"tenant-a-{Guid.NewGuid():N}";
    readonly string _b = $"tenant-b-{Guid.NewGuid():N}";
    readonly List<string> _users = [];
    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "2",
        [$"Pools:{Pool}:MaxWorkers"] = "4",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.100",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00",
    }).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString,
            ["LeaseSaga", "Provisioner", "Trust"]);

    public async Task DisposeAsync()
    {
        await _cluster.DisposeAsync();
        using var http = ManagementClient();
        foreach (var user in _users)
        {
            await http.DeleteAsync($"/api/users/{Uri.EscapeDataString(user)}");
        }
    }

    [Fact]
    public async Task An_instance_leases_only_for_itself_and_touches_no_other_instance_s_lease()
    {
        await using var a = await DynamicWorkersClient.ConnectAsync(await AddInstanceAsync(_a));
        await using var b = await DynamicWorkersClient.ConnectAsync(await AddInstanceAsync(_b));
        var granted = Assert.IsType<LeaseResult.Granted>(
            await b.RequestLeaseAsync(_b, LifecycleCluster.ThumbprintOf(_b), Pool, deadline: TimeSpan.FromSeconds(30)));
        var bLease = granted.Lease;

        // A asks in B's name: Unauthorized, to A alone, and no lease is stored under that id.
        var forged = DynamicWorkersClient.NewLeaseRequest(_b, LifecycleCluster.ThumbprintOf(_a), Pool);
        var rejected = Assert.IsType<LeaseResult.Rejected>(await a.RequestLeaseAsync(forged, TimeSpan.FromSeconds(30)));
        Assert.Equal(LeaseRejectionReasons.Unauthorized, rejected.Rejection.Reason);
        Assert.Equal(0,
            await _cluster.ScalarAsync($"SELECT count(*) FROM leases WHERE \"CorrelationId\" = '{forged.LeaseId}'"));

        // A releases B's lease in B's name: refused with the reason in the error queue; B still holds its worker.
        await a.ReleaseAsync(bLease.LeaseId, _b);
        await Eventually.True(async () => await broker.QueueDepthAsync("lease-state_error") == 1,
            TimeSpan.FromSeconds(30), "the forged release in lease-state_error", _cluster.Diagnostics);
        Assert.Equal(1, await _cluster.ScalarAsync($"SELECT count(*) FROM leases WHERE \"CorrelationId\" = "
            + $"'{bLease.LeaseId}' AND \"CurrentState\" = 'Granted'"));

        // A lists B's workers, or everyone's: refused; its own: only its own.
        await Assert.ThrowsAsync<RequestFaultException>(() => a.GetWorkersAsync(Pool, _b));
        await Assert.ThrowsAsync<RequestFaultException>(() => a.GetWorkersAsync(Pool));
        Assert.Empty((await a.GetWorkersAsync(Pool, _a)).Workers);
        Assert.Single((await b.GetWorkersAsync(Pool, _b)).Workers);

        // The same for leases: B's or everyone's refused, its own only its own.
        await Assert.ThrowsAsync<RequestFaultException>(() => a.GetLeasesAsync(Pool, _b));
        await Assert.ThrowsAsync<RequestFaultException>(() => a.GetLeasesAsync());
        Assert.DoesNotContain((await a.GetLeasesAsync(Pool, _a)).Leases, l => l.InstanceId != _a);
        Assert.Equal(bLease.LeaseId, Assert.Single((await b.GetLeasesAsync(instanceId: _b)).Leases).LeaseId);

        // B's own release still works.
        await b.ReleaseAsync(bLease.LeaseId, _b);
        await Eventually.True(async () => await _cluster.ScalarAsync($"SELECT count(*) FROM leases WHERE "
            + $"\"CorrelationId\" = '{bLease.LeaseId}' AND \"CurrentState\" = 'Released'") == 1,
            TimeSpan.FromSeconds(30), "B's release", _cluster.Diagnostics);
    }

    [Fact]
    public async Task The_broker_refuses_every_internal_and_operator_message_from_an_instance()
    {
        var uri = new Uri(await AddInstanceAsync(_a));
        var workers = await _cluster.ScalarAsync("SELECT count(*) FROM workers");
        var targets = new (string Exchange, string Queue)[]
        {
            ("DynamicWorkers.Contracts.Internal:WorkerTrusted", ""),
            ("DynamicWorkers.Contracts.Internal:WorkerProvisioned", ""),
            ("DynamicWorkers.Contracts.Internal:SweepOverdueTimers", ""),
            ("DynamicWorkers.Contracts:SetPoolSize", ""),
            ("DynamicWorkers.Contracts:SetPoolImage", ""),
            ("DynamicWorkers.Contracts:SetInstanceLifecycle", ""),
            ("", "provision-worker"),
            ("", "trust-worker"),
            ("", "deprovision-worker"),
            ("", "quartz"),
        };
        foreach (var (exchange, queue) in targets)
        {
            await using var connection = await Factory(uri).CreateConnectionAsync();
            await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(
                publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
            var refused = await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                await channel.BasicPublishAsync(exchange, queue, false,
                    new BasicProperties { UserId = uri.UserInfo.Split(':')[0] }, Encoding.UTF8.GetBytes("{}"));
                await Task.Delay(TimeSpan.FromSeconds(5));
                throw new InvalidOperationException($"the broker took a publish to '{exchange}'/'{queue}'");
            });
            Assert.True(refused is AlreadyClosedException or OperationInterruptedException
                or RabbitMQ.Client.Exceptions.PublishException, refused.ToString());
            Assert.Contains("ACCESS_REFUSED", channel.CloseReason?.ReplyText ?? refused.Message);
        }

        // Nor may it read another's replies or a service's queue.
        await using (var connection = await Factory(uri).CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync())
        {
            var refused = await Assert.ThrowsAnyAsync<OperationInterruptedException>(
                () => channel.BasicGetAsync("lease-state", autoAck: true));
            Assert.Contains("ACCESS_REFUSED", refused.Message);
        }

        Assert.Equal(workers, await _cluster.ScalarAsync("SELECT count(*) FROM workers"));
        Assert.Equal(0, await _cluster.ScalarAsync("SELECT count(*) FROM instance_lifecycles"));
    }

    [Fact]
    public async Task A_service_refuses_an_internal_message_the_broker_let_through()
    {
        // A misconfigured broker: this instance's user may write anywhere. The services still act only on their own.
        var uri = new Uri(await AddInstanceAsync(_a));
        using (var http = ManagementClient())
        {
            var everything =
                new StringContent("""{"configure":".*","write":".*","read":".*"}""", Encoding.UTF8, "application/json");
            (await http.PutAsync(
                $"/api/permissions/{Uri.EscapeDataString(broker.Name)}/{Uri.EscapeDataString("instance-" + _a)}",
                everything)).EnsureSuccessStatusCode();
        }

        var victim = await _cluster.Bus.CreateRequestClient<LeaseRequested>(RequestTimeout.After(s: 30))
            .GetResponse<LeaseGranted>(
            new LeaseRequested(NewId.NextGuid(), _b, LifecycleCluster.ThumbprintOf(_b), Pool, null,
                DateTimeOffset.UtcNow));
        var revoke = RawAmqp.Envelope(Guid.NewGuid().ToString(), "urn:message:DynamicWorkers.Internal:RevokeLease",
            $$"""{"leaseId":"{{victim.Message.LeaseId}}","workerId":"{{victim.Message.WorkerId}}","reason":"WorkerLost"}""");
        await using (var connection = await Factory(uri).CreateConnectionAsync())
        await using (var channel = await connection.CreateChannelAsync())
        {
            var properties = new BasicProperties { ContentType = RawAmqp.MassTransitJson, UserId = "instance-" + _a,
                Persistent = true };
            await channel.BasicPublishAsync("DynamicWorkers.Contracts.Internal:RevokeLease", "", false, properties,
                Encoding.UTF8.GetBytes(revoke));
        }

        await Eventually.True(async () => await broker.QueueDepthAsync("lease-state_error") == 1,
            TimeSpan.FromSeconds(30), "the forged revocation in lease-state_error", _cluster.Diagnostics);
        var leaseSaga = _cluster.Services.Single(s => s.Project == "LeaseSaga");
        Assert.Contains("Refused RevokeLease", leaseSaga.Output);
        Assert.Equal(1, await _cluster.ScalarAsync($"SELECT count(*) FROM leases WHERE \"CorrelationId\" = "
            + $"'{victim.Message.LeaseId}' AND \"CurrentState\" = 'Granted'"));
    }

    [Fact]
    public async Task The_operator_made_by_dw_broker_setup_sizes_pools_and_an_instance_may_not()
    {
        // scripts/test.sh passes the same passwords (users are global to the broker; setup is idempotent).
        var passwords = new Dictionary<string, string>
        {
            ["DW_LEASE_SAGA_PASSWORD"] = Env("DW_LEASE_SAGA_PASSWORD", "dw-lease-saga"),
            ["DW_PROVISIONER_PASSWORD"] = Env("DW_PROVISIONER_PASSWORD", "dw-provisioner"),
            ["DW_TRUST_PASSWORD"] = Env("DW_TRUST_PASSWORD", "dw-trust"),
            ["DW_REAPER_PASSWORD"] = Env("DW_REAPER_PASSWORD", "dw-reaper"),
            ["DW_OPERATOR_PASSWORD"] = Env("DW_OPERATOR_PASSWORD", "dw-operator"),
        };
        var setup = await CliRun.RunAsync(passwords, "broker", "setup", "--management", ManagementUri(), "--vhost",
            broker.Name);
        Assert.True(setup.ExitCode == 0, setup.ToString());

        var operatorUri = $"amqp://dw-operator:{Uri.EscapeDataString(passwords["DW_OPERATOR_PASSWORD"])}"
            + $"@{TestServers.RabbitMqHost}:5672/{Uri.EscapeDataString(broker.Name)}";
        await using (var ops = await DynamicWorkersClient.ConnectAsync(operatorUri))
        {
            await ops.SetPoolSizeAsync(Pool, 3, 4);
            await Eventually.True(async () => (await ops.GetPoolStatusAsync(Pool)).Pools.Single().HotTarget == 3,
                TimeSpan.FromSeconds(30), "the operator's new size", _cluster.Diagnostics);
        }

        // The broker refuses an instance's pool query outright (its exchange is not the instance's to write): no answer
        // comes.
        await using var a = await DynamicWorkersClient.ConnectAsync(await AddInstanceAsync(_a));
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a.GetPoolStatusAsync(Pool, deadline.Token));
    }

    static string Env(string name, string fallback)
        => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback;

    static string ManagementUri()
        => new UriBuilder(TestServers.RabbitMqManagement) { UserName = TestServers.RabbitMqUser,
            Password = TestServers.RabbitMqPassword }.Uri.ToString();

    /// <summary><c>dw instance add</c> against the test's virtual host; returns the AMQP URI it printed.</summary>
    async Task<string> AddInstanceAsync(string instanceId)
    {
        _users.Add("instance-" + instanceId);
        var run = await CliRun.RunAsync(null, "instance", "add", "--instance", instanceId, "--management",
            ManagementUri(), "--vhost", broker.Name);
        Assert.True(run.ExitCode == 0, run.ToString());
        var uri = run.Stdout.Trim();
        Assert.StartsWith($"amqp://instance-{instanceId}:", uri);
        return uri;
    }

    static ConnectionFactory Factory(Uri uri)
    {
        var login = uri.UserInfo.Split(':', 2);
        return new ConnectionFactory
        {
            HostName = uri.Host,
            Port = uri.Port,
            UserName = Uri.UnescapeDataString(login[0]),
            Password = Uri.UnescapeDataString(login[1]),
            VirtualHost = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/')),
        };
    }

    static HttpClient ManagementClient()
    {
        var http = new HttpClient { BaseAddress = new Uri(TestServers.RabbitMqManagement) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue(
            "Basic", Convert.ToBase64String(
                Encoding.UTF8.GetBytes($"{TestServers.RabbitMqUser}:{TestServers.RabbitMqPassword}")));
        return http;
    }
}
