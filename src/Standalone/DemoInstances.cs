using System.Security.Cryptography;
using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Hosting;
using MassTransit;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.Standalone;

/// <summary>
/// <c>--demo</c>: three pretend customer instances lease workers over the bus, round after round, so a newcomer
/// sees in the dashboard and the log what the service does: a hot grant, re-use of the same instance's idle
/// worker, a repeated request answered the same, a bad request rejected, a burst that drains the hot pool
/// (leases wait while it refills: cold grants), idle workers deleted after the compressed idle timeout, and in the
/// second round an image rollout (hot workers replaced a surge at a time, leased ones when released).
/// </summary>
public sealed class DemoInstances(IBus bus, IHostApplicationLifetime lifetime, ILogger<DemoInstances> logger)
    : BackgroundService
{
    public const string Switch = "--demo";

    const string Pool = "ubuntu-22.04";

    /// <summary>The image the demo rolls its pool out to in its second round.</summary>
    public const string RolledOutImage = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:22.04.202612070";
    static readonly TimeSpan Hold = TimeSpan.FromSeconds(4);

    /// <summary>Timeouts shrunk from hours to seconds, a fresh demo database, a quick simulated cloud.</summary>
    public static void AddDefaults(IDictionary<string, string?> settings, string dataDirectory)
    {
        var database = Path.Combine(dataDirectory, "dynamic-workers-demo.db");
        foreach (var file in new[] { database, database + "-wal", database + "-shm" })
        {
            File.Delete(file);
        }

        settings["ConnectionStrings:Default"] = $"Data Source={database}";
        settings["Lifecycle:IdleTimeout"] = "00:00:20";
        settings["Lifecycle:MaxLeaseDuration"] = "00:02:00";
        settings["Lifecycle:MaxWorkerAge"] = "00:10:00";
        settings["Lifecycle:ProvisioningTimeout"] = "00:00:30";
        settings["Lifecycle:TrustTimeout"] = "00:00:15";
        settings["Cloud:Simulated:ProvisionDelay"] = "00:00:04";
        settings["Cloud:Simulated:TrustDelay"] = "00:00:01";
        settings["Cloud:Simulated:DeleteDelay"] = "00:00:01";
        settings["Reaper:SweepInterval"] = "00:00:30";
        settings[$"Pools:{Pool}:AllocationTimeout"] = "00:01:00";
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await lifetime.WhenStartedAsync(stoppingToken);
        var acme = new Instance("acme", NewThumbprint());
        var globex = new Instance("globex", NewThumbprint());
        var initech = new Instance("initech", "not-a-thumbprint; rm -rf /");
        var client = bus.CreateRequestClient<LeaseRequested>(RequestTimeout.After(m: 2));
        try
        {
            for (var round = 1; !stoppingToken.IsCancellationRequested; round++)
            {
                logger.LogInformation("demo round {Round}: watch the dashboard", round);
                if (round == 2)
                {
                    // Once, after the first round showed the rest: the pool card counts the workers still on the older
                    // image.
                    logger.LogInformation("demo: rolling {Pool} out to image {Image}", Pool, RolledOutImage);
                    await bus.Publish(new SetPoolImage(Pool, RolledOutImage), stoppingToken);
                }

                // A hot worker, then the same instance again: its idle worker is re-used without a trust step.
                await RunLeaseAsync(client, acme, "build-1", stoppingToken);
                await RunLeaseAsync(client, acme, "build-2", stoppingToken);

                // A client that lost the answer asks again with the same LeaseId: same answer, nothing re-run.
                var leaseId = NewId.NextGuid();
                var first = await RequestAsync(client, globex, leaseId, "deploy-1", stoppingToken);
                var again = await RequestAsync(client, globex, leaseId, "deploy-1", stoppingToken);
                logger.LogInformation("demo: globex repeated lease {LeaseId}: {Same}", leaseId,
                    SameAnswer(first, again) ? "same answer" : "DIFFERENT answer");
                await ReleaseAsync(globex, first, stoppingToken);

                // A malformed request is rejected with a reason; nothing else notices.
                await RequestAsync(client, initech, NewId.NextGuid(), "bad", stoppingToken);

                // A burst larger than the hot pool: some leases wait while new workers are provisioned.
                var burst = await Task.WhenAll(Enumerable.Range(1, 4).Select(i =>
                    RequestAsync(client, globex, NewId.NextGuid(), $"release-{round}-{i}", stoppingToken)));
                await Task.Delay(Hold, stoppingToken);
                foreach (var answer in burst)
                {
                    await ReleaseAsync(globex, answer, stoppingToken);
                }

                // Idle workers are deleted after the (compressed) idle timeout; the pool refills to its hot target.
                logger.LogInformation(
                    "demo: pausing 30 s — idle workers of acme and globex are reaped after 20 s idle");
                await Task.Delay(TimeSpan.FromSeconds(30), stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    async Task RunLeaseAsync(IRequestClient<LeaseRequested> client, Instance instance, string task,
        CancellationToken cancellationToken)
    {
        var answer = await RequestAsync(client, instance, NewId.NextGuid(), task, cancellationToken);
        await Task.Delay(Hold, cancellationToken);
        await ReleaseAsync(instance, answer, cancellationToken);
    }

    async Task<object> RequestAsync(IRequestClient<LeaseRequested> client, Instance instance, Guid leaseId, string task,
        CancellationToken cancellationToken)
    {
        logger.LogInformation("demo: {InstanceId} asks for a {Pool} worker (lease {LeaseId}, task {TaskId})",
            instance.Id, Pool, leaseId, task);
        var request = new LeaseRequested(leaseId, instance.Id, instance.Thumbprint, Pool, task, DateTimeOffset.UtcNow);
        var response = await client.GetResponse<LeaseGranted, LeaseRejected>(request, cancellationToken);
        if (response.Is(out Response<LeaseGranted>? granted))
        {
            var grant = granted.Message;
            logger.LogInformation(
                "demo: {InstanceId} got worker {WorkerId} at {Address}{Reused} after {Wait:0.0} s",
                instance.Id, grant.WorkerId, grant.WorkerAddress, grant.Reused ? " (re-used)" : "",
                (grant.GrantedAt - request.RequestedAt).TotalSeconds);
            return grant;
        }

        response.Is(out Response<LeaseRejected>? refused);
        var rejected = refused!.Message;
        logger.LogInformation("demo: {InstanceId} was refused: {Reason} ({Detail})", instance.Id, rejected.Reason,
            rejected.Detail);
        return rejected;
    }

    async Task ReleaseAsync(Instance instance, object answer, CancellationToken cancellationToken)
    {
        if (answer is LeaseGranted grant)
        {
            await bus.Publish(new LeaseReleased(grant.LeaseId, instance.Id), cancellationToken);
            logger.LogInformation("demo: {InstanceId} released worker {WorkerId}", instance.Id, grant.WorkerId);
        }
    }

    static bool SameAnswer(object first, object again) => (first, again) switch
    {
        (LeaseGranted a, LeaseGranted b) => a.WorkerId == b.WorkerId,
        (LeaseRejected a, LeaseRejected b) => a.Reason == b.Reason,
        _ => false,
    };

    static string NewThumbprint() => Convert.ToHexString(RandomNumberGenerator.GetBytes(20));

    sealed record Instance(string Id, string Thumbprint);
}
