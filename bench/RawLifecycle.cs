using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace DynamicWorkers.Bench;

/// <summary>What one raw lifecycle run did: lifecycles completed, their rate, and request → grant and request →
/// release-committed times.</summary>
public sealed record RawLifecycleRun(int Lifecycles, int Lost, TimeSpan Elapsed, IReadOnlyList<double> GrantMs,
    IReadOnlyList<double> LifecycleMs)
{
    public double PerSecond => Lifecycles / Math.Max(0.001, Elapsed.TotalSeconds);
}

/// <summary>
/// The lease lifecycle written by hand, without the services, MassTransit or EF Core: the least a request → grant →
/// release can cost on this broker and database, and so the denominator of the sustained-throughput goal. Per lifecycle
/// three persistent, publisher-confirmed messages through durable queues of the bench's vhost (request, grant, release)
/// and two committed PostgreSQL transactions in the bench's database, on tables of its own (<c>raw_workers</c>,
/// <c>raw_leases</c>): at the request a worker claimed (<c>SELECT … FOR UPDATE SKIP LOCKED</c> on an index, then
/// <c>UPDATE … RETURNING</c>) and the lease row inserted, one statement; at the release the lease ended and its
/// worker idle again, one statement. A "service" side (its own connection, 32 messages at once per queue, 20 pooled
/// database connections, as the services run) answers a "client" side of closed loops, each asking again as soon as its
/// grant came and its release was confirmed, as the benchmark's closed loop of the real services does.
/// </summary>
public static class RawLifecycle
{
    const string Pool = "raw-pool";
    const string RequestQueue = "raw-lease-requested";
    const string GrantQueue = "raw-lease-granted";
    const string ReleaseQueue = "raw-lease-released";
    const int ServiceConcurrency = 32;

    /// <summary>Idle workers the loops take from: several per loop, so that a claim never finds the pool
    /// empty.</summary>
    const int Workers = 1000;

    // About the size of a lease request in MassTransit's envelope (the raw broker run's 600 bytes).
    static readonly string Padding = new('x', 420);

    public sealed record RawMessage(Guid LeaseId, string InstanceId, string Pool, long? WorkerId, string? WorkerAddress,
        string Padding);

    const string Schema = """
        CREATE TABLE raw_workers (
            id bigint PRIMARY KEY,
            pool varchar(64) NOT NULL,
            state varchar(16) NOT NULL,
            address varchar(256) NOT NULL,
            instance_id varchar(200),
            lease_id uuid,
            idle_since timestamptz NOT NULL,
            lease_count integer NOT NULL DEFAULT 0);
        CREATE INDEX raw_workers_claim ON raw_workers (pool, state, idle_since);
        CREATE TABLE raw_leases (
            id uuid PRIMARY KEY,
            pool varchar(64) NOT NULL,
            instance_id varchar(200) NOT NULL,
            worker_id bigint,
            requested_at timestamptz NOT NULL,
            granted_at timestamptz,
            ended_at timestamptz);
        """;

    // At the request: the oldest idle worker of the pool claimed (rows locked by another claim skipped) and the lease
    // inserted with it, one statement and so one transaction; no worker, and the lease is stored without one. The claim
    // is a locked candidate joined to the UPDATE, not `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`: that
    // form claimed nothing for about 0.15 % of claims at 32 concurrent clients (pgbench on PostgreSQL 15, 20 of some
    // 13,000 in each of four 10-second runs, spread over the run, with hundreds of workers idle), this one for none.
    const string Claim = """
        WITH candidate AS (
            SELECT id FROM raw_workers WHERE pool = $2 AND state = 'idle' ORDER BY idle_since LIMIT 1 FOR UPDATE SKIP LOCKED),
        claimed AS (
            UPDATE raw_workers w SET state = 'leased', lease_id = $1, instance_id = $3
            FROM candidate WHERE w.id = candidate.id
            RETURNING w.id, w.address)
        INSERT INTO raw_leases (id, pool, instance_id, worker_id, requested_at, granted_at)
        SELECT $1, $2, $3, (SELECT id FROM claimed), $4, now()
        RETURNING worker_id, (SELECT address FROM claimed)
        """;

    // At the release: the lease ended and its worker idle again, one statement.
    const string Release = """
        WITH ended AS (UPDATE raw_leases SET ended_at = now() WHERE id = $1 AND ended_at IS NULL RETURNING worker_id)
        UPDATE raw_workers SET state = 'idle', lease_id = NULL, idle_since = now(), lease_count = lease_count + 1
        WHERE id = (SELECT worker_id FROM ended)
        """;

    public static async Task<RawLifecycleRun> RunAsync(BenchVirtualHost vhost, BenchDatabase database, int loops,
        TimeSpan duration)
    {
        var connectionString = new NpgsqlConnectionStringBuilder(database.ConnectionString(20))
        {
            // As the services connect (see ConnectionStrings:Default in docs/configuration.md).
            NoResetOnClose = true,
            MaxAutoPrepare = 64,
        }.ConnectionString;
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await using (var setup = dataSource.CreateCommand(Schema))
        {
            await setup.ExecuteNonQueryAsync();
        }

        await using (var seed = dataSource.CreateCommand(
            "INSERT INTO raw_workers (id, pool, state, address, idle_since) "
            + "SELECT g, $1, 'idle', '10.0.' || (g / 256) || '.' || (g % 256) || ':8443', "
            + "now() - g * interval '1 second' FROM generate_series(1, $2) g"))
        {
            seed.Parameters.Add(new NpgsqlParameter { Value = Pool });
            seed.Parameters.Add(new NpgsqlParameter { Value = Workers });
            await seed.ExecuteNonQueryAsync();
        }

        await using (var analyze = dataSource.CreateCommand("ANALYZE raw_workers; ANALYZE raw_leases"))
        {
            await analyze.ExecuteNonQueryAsync();
        }

        var factory = new ConnectionFactory
        {
            HostName = BenchServers.RabbitMqHost,
            VirtualHost = vhost.Name,
            UserName = BenchServers.RabbitMqUser,
            Password = BenchServers.RabbitMqPassword,
        };
        var confirmed = new CreateChannelOptions(publisherConfirmationsEnabled: true,
            publisherConfirmationTrackingEnabled: true);
        var properties = new BasicProperties { Persistent = true, ContentType = "application/json" };

        // The "service": consumes requests and releases, 32 at once each, and publishes grants.
        await using var serviceConnection = await factory.CreateConnectionAsync("raw-lifecycle-service");
        await using var servicePublisher = await serviceConnection.CreateChannelAsync(confirmed);
        foreach (var queue in new[] { RequestQueue, GrantQueue, ReleaseQueue })
        {
            await servicePublisher.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
        }

        var released = new ConcurrentDictionary<Guid, TaskCompletionSource>();
        await using var requests = await serviceConnection.CreateChannelAsync(new CreateChannelOptions(false, false,
            consumerDispatchConcurrency: ServiceConcurrency));
        await requests.BasicQosAsync(0, ServiceConcurrency, false);
        var requestConsumer = new AsyncEventingBasicConsumer(requests);
        requestConsumer.ReceivedAsync += async (_, delivery) =>
        {
            var request = JsonSerializer.Deserialize<RawMessage>(delivery.Body.Span)!;
            await using var claim = dataSource.CreateCommand(Claim);
            claim.Parameters.Add(new NpgsqlParameter { Value = request.LeaseId });
            claim.Parameters.Add(new NpgsqlParameter { Value = request.Pool });
            claim.Parameters.Add(new NpgsqlParameter { Value = request.InstanceId });
            claim.Parameters.Add(new NpgsqlParameter { Value = DateTimeOffset.UtcNow });
            long? workerId = null;
            string? address = null;
            await using (var reader = await claim.ExecuteReaderAsync())
            {
                if (await reader.ReadAsync() && !reader.IsDBNull(0))
                {
                    workerId = reader.GetInt64(0);
                    address = reader.GetString(1);
                }
            }

            var grant = request with { WorkerId = workerId, WorkerAddress = address };
            await servicePublisher.BasicPublishAsync("", GrantQueue, mandatory: false, properties,
                JsonSerializer.SerializeToUtf8Bytes(grant));
            await requests.BasicAckAsync(delivery.DeliveryTag, multiple: false);
        };
        await requests.BasicConsumeAsync(RequestQueue, autoAck: false, requestConsumer);

        await using var releases = await serviceConnection.CreateChannelAsync(new CreateChannelOptions(false, false,
            consumerDispatchConcurrency: ServiceConcurrency));
        await releases.BasicQosAsync(0, ServiceConcurrency, false);
        var releaseConsumer = new AsyncEventingBasicConsumer(releases);
        releaseConsumer.ReceivedAsync += async (_, delivery) =>
        {
            var release = JsonSerializer.Deserialize<RawMessage>(delivery.Body.Span)!;
            await using var end = dataSource.CreateCommand(Release);
            end.Parameters.Add(new NpgsqlParameter { Value = release.LeaseId });
            await end.ExecuteNonQueryAsync();
            await releases.BasicAckAsync(delivery.DeliveryTag, multiple: false);
            if (released.TryRemove(release.LeaseId, out var done))
            {
                done.TrySetResult();
            }
        };
        await releases.BasicConsumeAsync(ReleaseQueue, autoAck: false, releaseConsumer);

        // The "client": publishes requests and releases, consumes grants.
        await using var clientConnection = await factory.CreateConnectionAsync("raw-lifecycle-client");
        await using var clientPublisher = await clientConnection.CreateChannelAsync(confirmed);
        await using var grants = await clientConnection.CreateChannelAsync();
        await grants.BasicQosAsync(0, 256, false);
        var granted = new ConcurrentDictionary<Guid, TaskCompletionSource<RawMessage>>();
        var grantConsumer = new AsyncEventingBasicConsumer(grants);
        grantConsumer.ReceivedAsync += async (_, delivery) =>
        {
            var grant = JsonSerializer.Deserialize<RawMessage>(delivery.Body.Span)!;
            await grants.BasicAckAsync(delivery.DeliveryTag, multiple: false);
            if (granted.TryRemove(grant.LeaseId, out var waiting))
            {
                waiting.TrySetResult(grant);
            }
        };
        await grants.BasicConsumeAsync(GrantQueue, autoAck: false, grantConsumer);

        var grantMs = new ConcurrentBag<double>();
        var lifecycleMs = new ConcurrentBag<double>();
        var lifecycles = new ConcurrentBag<Task>();
        var lost = 0;
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, loops).Select(async i =>
        {
            var instance = $"raw-{i:000}";
            while (Stopwatch.GetElapsedTime(started) < duration)
            {
                var leaseId = Guid.NewGuid();
                var at = Stopwatch.GetTimestamp();
                var grant = new TaskCompletionSource<RawMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
                granted[leaseId] = grant;
                await clientPublisher.BasicPublishAsync("", RequestQueue, mandatory: false, properties,
                    JsonSerializer.SerializeToUtf8Bytes(new RawMessage(leaseId, instance, Pool, null, null, Padding)));
                if (await Task.WhenAny(grant.Task, Task.Delay(TimeSpan.FromSeconds(30))) != grant.Task
                    || grant.Task.Result.WorkerId is null)
                {
                    Interlocked.Increment(ref lost);
                    granted.TryRemove(leaseId, out _);
                    return; // no answer, or no worker: the run is not clean, stop this loop
                }

                grantMs.Add(Stopwatch.GetElapsedTime(at).TotalMilliseconds);
                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                released[leaseId] = done;
                lifecycles.Add(done.Task.ContinueWith(
                    _ => lifecycleMs.Add(Stopwatch.GetElapsedTime(at).TotalMilliseconds), TaskScheduler.Default));
                await clientPublisher.BasicPublishAsync("", ReleaseQueue, mandatory: false, properties,
                    JsonSerializer.SerializeToUtf8Bytes(grant.Task.Result));
            }
        }));

        // Every release committed (bounded: a release not done within the deadline counts as lost).
        var all = Task.WhenAll(lifecycles);
        if (await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(30))) != all)
        {
            lost += lifecycles.Count(l => !l.IsCompleted);
        }

        var elapsed = Stopwatch.GetElapsedTime(started);
        return new RawLifecycleRun(lifecycleMs.Count, lost, elapsed, grantMs.ToList(), lifecycleMs.ToList());
    }
}
