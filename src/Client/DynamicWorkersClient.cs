using System.Diagnostics;
using DynamicWorkers.Contracts;
using MassTransit;

namespace DynamicWorkers.Client;

/// <summary>
/// Everything an instance or an operator asks of Dynamic Workers, over any MassTransit bus: every message is
/// published (the service subscribes; no queue names needed), requests carry a response address.
/// Build one with <see cref="ConnectAsync(Uri, DynamicWorkersClientOptions?, CancellationToken)"/> (owns its
/// own RabbitMQ bus) or take it from DI after <c>services.AddDynamicWorkersClient()</c> (uses the app's bus).
/// </summary>
public sealed class DynamicWorkersClient : IAsyncDisposable
{
    readonly IBus _bus;
    readonly IBusControl? _ownedBus;
    readonly DynamicWorkersClientOptions _options;

    public DynamicWorkersClient(IBus bus, DynamicWorkersClientOptions? options = null)
        : this(bus, null, options)
    {
    }

    DynamicWorkersClient(IBus bus, IBusControl? ownedBus, DynamicWorkersClientOptions? options)
    {
        _bus = bus;
        _ownedBus = ownedBus;
        _options = options ?? new DynamicWorkersClientOptions();
    }

    /// <summary>
    /// Connects to RabbitMQ from an AMQP URI, e.g. <c>amqp://user:password@host:5672/vhost</c> (no path: the
    /// virtual host <c>/</c>; <c>amqps://</c> for TLS). Throws <see cref="DynamicWorkersUnreachableException"/>
    /// when the broker does not accept the connection within <paramref name="cancellationToken"/>'s time.
    /// </summary>
    public static async Task<DynamicWorkersClient> ConnectAsync(Uri rabbitMq,
        DynamicWorkersClientOptions? options = null, CancellationToken cancellationToken = default)
    {
        var bus = RabbitMqBus.Create(rabbitMq);
        await RabbitMqBus.StartAsync(bus, rabbitMq, cancellationToken);
        return new DynamicWorkersClient(bus, bus, options);
    }

    /// <inheritdoc cref="ConnectAsync(Uri, DynamicWorkersClientOptions?, CancellationToken)"/>
    public static Task<DynamicWorkersClient> ConnectAsync(string rabbitMqUri,
        DynamicWorkersClientOptions? options = null, CancellationToken cancellationToken = default)
        => ConnectAsync(new Uri(rabbitMqUri), options, cancellationToken);

    /// <summary>
    /// Asks for a worker and waits for the answer. The request is published with a response address and, if no
    /// answer comes within <see cref="DynamicWorkersClientOptions.AttemptTimeout"/>, published again with the
    /// same <c>LeaseId</c> (the service answers a repeat with the lease's one outcome) until
    /// <paramref name="deadline"/> (default <see cref="DynamicWorkersClientOptions.LeaseDeadline"/>) passes.
    /// Returns <see cref="LeaseResult.Granted"/> or <see cref="LeaseResult.Rejected"/>; throws
    /// <see cref="DynamicWorkersTimeoutException"/> (carrying the <c>LeaseId</c> to ask again with) when no answer
    /// came.
    /// </summary>
    public Task<LeaseResult> RequestLeaseAsync(
        string instanceId,
        string serverThumbprint,
        string pool,
        Guid? leaseId = null,
        string? taskId = null,
        TimeSpan? deadline = null,
        CancellationToken cancellationToken = default)
        => RequestLeaseAsync(NewLeaseRequest(instanceId, serverThumbprint, pool, leaseId, taskId), deadline,
            cancellationToken);

    /// <inheritdoc cref="RequestLeaseAsync(string, string, string, Guid?, string?, TimeSpan?, CancellationToken)"/>
    public Task<LeaseResult> RequestLeaseAsync(LeaseRequested request, TimeSpan? deadline = null,
        CancellationToken cancellationToken = default)
    {
        return WithAttemptsAsync<LeaseResult>(
            deadline ?? _options.LeaseDeadline,
            $"an answer to lease {request.LeaseId}",
            request.LeaseId,
            async (timeout, ct) =>
            {
                var client = _bus.CreateRequestClient<LeaseRequested>();
                var response = await client.GetResponse<LeaseGranted, LeaseRejected>(request, ct, timeout);
                if (response.Is(out Response<LeaseGranted>? granted))
                {
                    return new LeaseResult.Granted(granted.Message);
                }

                return response.Is(out Response<LeaseRejected>? rejected)
                    ? new LeaseResult.Rejected(rejected.Message)
                    : throw new InvalidOperationException(
                        $"unexpected answer {response.Message.GetType().Name} to lease {request.LeaseId}");
            },
            cancellationToken);
    }

    /// <summary>
    /// Publishes a lease request without waiting for the answer (it is published too, to whoever subscribes).
    /// </summary>
    public Task PublishLeaseRequestAsync(LeaseRequested request, CancellationToken cancellationToken = default)
        => _bus.Publish(request, cancellationToken);

    /// <summary>
    /// A valid request with a new <c>LeaseId</c> unless one is given. Throws <see cref="ArgumentException"/> for
    /// what the service would reject as <c>InvalidRequest</c> anyway (bad thumbprint, empty instance or pool).
    /// </summary>
    public static LeaseRequested NewLeaseRequest(string instanceId, string serverThumbprint, string pool,
        Guid? leaseId = null, string? taskId = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(instanceId);
        ArgumentException.ThrowIfNullOrWhiteSpace(pool);
        if (!Thumbprint.IsValid(serverThumbprint))
        {
            throw new ArgumentException(
                "the server thumbprint must be the SHA-1 (40) or SHA-256 (64) hex thumbprint of the instance's "
                + "certificate, without separators",
                nameof(serverThumbprint));
        }

        if (leaseId == Guid.Empty)
        {
            throw new ArgumentException("the lease id must not be the empty GUID", nameof(leaseId));
        }

        return new LeaseRequested(leaseId ?? NewId.NextGuid(), instanceId, serverThumbprint, pool, taskId,
            DateTimeOffset.UtcNow);
    }

    /// <summary>
    /// The task ended: the worker goes idle, still trusting only this instance (re-used by its next lease).
    /// </summary>
    public Task ReleaseAsync(Guid leaseId, string instanceId, CancellationToken cancellationToken = default)
        => _bus.Publish(new LeaseReleased(leaseId, instanceId), cancellationToken);

    /// <summary>Status of one pool, or of every pool when <paramref name="pool"/> is null.</summary>
    public Task<PoolStatus> GetPoolStatusAsync(string? pool = null, CancellationToken cancellationToken = default)
        => QueryAsync<GetPoolStatus, PoolStatus>(new GetPoolStatus(pool), "pool status", cancellationToken);

    /// <summary>Workers, optionally of one pool and/or trusting one instance.</summary>
    public Task<WorkerList> GetWorkersAsync(string? pool = null, string? instanceId = null,
        CancellationToken cancellationToken = default)
        => QueryAsync<GetWorkers, WorkerList>(new GetWorkers(pool, instanceId), "the worker list", cancellationToken);

    /// <summary>
    /// Leases (open first, then the most recently ended), optionally of one pool and/or one instance.
    /// </summary>
    public Task<LeaseList> GetLeasesAsync(string? pool = null, string? instanceId = null,
        CancellationToken cancellationToken = default)
        => QueryAsync<GetLeases, LeaseList>(new GetLeases(pool, instanceId), "the lease list", cancellationToken);

    /// <summary>
    /// Publishes a new size for a pool. The service applies it at once; an invalid one is refused there (see its
    /// <c>_error</c> queue).
    /// </summary>
    public Task SetPoolSizeAsync(string pool, int hotTarget, int maxWorkers,
        CancellationToken cancellationToken = default)
        => _bus.Publish(new SetPoolSize(pool, hotTarget, maxWorkers), cancellationToken);

    /// <summary>
    /// Publishes a new image for a pool: its workers of older images are replaced (hot and idle ones within the pool's
    /// surge, leased ones after their lease); pool status shows the image and the workers still outdated.
    /// </summary>
    public Task SetPoolImageAsync(string pool, string image, CancellationToken cancellationToken = default)
        => _bus.Publish(new SetPoolImage(pool, image), cancellationToken);

    /// <summary>Publishes lifecycle limits for one instance; a null limit stays as it is.</summary>
    public Task SetInstanceLifecycleAsync(SetInstanceLifecycle command, CancellationToken cancellationToken = default)
        => _bus.Publish(command, cancellationToken);

    /// <summary>
    /// Offboards an instance: its open leases revoked, its workers deleted, its settings dropped. Safe to repeat (a
    /// repeat answers zeros); refused unless the client connects as an operator.
    /// </summary>
    public Task<InstanceRemoved> RemoveInstanceAsync(string instanceId, string? reason = null,
        CancellationToken cancellationToken = default)
        => QueryAsync<RemoveInstance, InstanceRemoved>(new RemoveInstance(instanceId, reason),
            $"removing instance {instanceId}", cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (_ownedBus is not null)
        {
            await _ownedBus.StopAsync(TimeSpan.FromSeconds(10));
        }
    }

    Task<TResponse> QueryAsync<TRequest, TResponse>(TRequest request, string what, CancellationToken cancellationToken)
        where TRequest : class
        where TResponse : class
        => WithAttemptsAsync(
            _options.QueryDeadline,
            what,
            null,
            async (timeout, ct)
                => (await _bus.CreateRequestClient<TRequest>().GetResponse<TResponse>(request, ct, timeout)).Message,
            cancellationToken);

    /// <summary>Runs <paramref name="attempt"/> again each time one times out, until the deadline has passed.</summary>
    async Task<T> WithAttemptsAsync<T>(TimeSpan deadline, string what, Guid? leaseId,
        Func<RequestTimeout, CancellationToken, Task<T>> attempt, CancellationToken cancellationToken)
    {
        var elapsed = Stopwatch.StartNew();
        var attempts = 0;
        while (true)
        {
            var remaining = deadline - elapsed.Elapsed;
            if (remaining <= TimeSpan.Zero)
            {
                throw new DynamicWorkersTimeoutException(
                    $"no answer within {deadline.TotalSeconds:0.###} s ({attempts} attempts): {what}", leaseId);
            }

            attempts++;
            var timeout = remaining < _options.AttemptTimeout ? remaining : _options.AttemptTimeout;
            try
            {
                return await attempt(
                    RequestTimeout.After(ms: Math.Max(1, (int)Math.Ceiling(timeout.TotalMilliseconds))),
                    cancellationToken);
            }
            catch (RequestTimeoutException)
            {
                // Ask again: every request here is safe to repeat.
            }
        }
    }
}
