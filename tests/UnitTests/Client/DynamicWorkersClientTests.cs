using System.Collections.Concurrent;
using DynamicWorkers.Client;
using DynamicWorkers.Contracts;
using MassTransit;
using MassTransit.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace DynamicWorkers.UnitTests.Client;

/// <summary>Stands in for the service: answers (or stays silent) as told, and remembers every attempt it saw.</summary>
public sealed class FakeLeaseService
{
    /// <summary>Attempt number (1-based) → the answer, or null for no answer.</summary>
    public Func<LeaseRequested, int, object?> Answer { get; set; } = (_, _) => null;

    public ConcurrentQueue<(LeaseRequested Message, Guid? RequestId, Uri? ResponseAddress)> Attempts { get; } = new();
}

public sealed class FakeLeaseServiceConsumer(FakeLeaseService service) : IConsumer<LeaseRequested>,
    IConsumer<GetPoolStatus>, IConsumer<GetWorkers>
{
    public async Task Consume(ConsumeContext<LeaseRequested> context)
    {
        service.Attempts.Enqueue((context.Message, context.RequestId, context.ResponseAddress));
        if (service.Answer(context.Message, service.Attempts.Count) is { } answer)
        {
            await context.RespondAsync(answer, answer.GetType());
        }
    }

    public Task Consume(ConsumeContext<GetPoolStatus> context)
        => context.RespondAsync(new PoolStatus([new PoolSummary(context.Message.Pool ?? "ubuntu-22.04",
            new Dictionary<string, int> { ["Ready"] = 2 }, 2, 10, 0, "image", ["kubectl"], 0)]));

    public Task Consume(ConsumeContext<GetWorkers> context)
        => context.RespondAsync(new WorkerList([new WorkerSummary(Guid.NewGuid(), "ubuntu-22.04", "Leased",
            context.Message.InstanceId, Guid.NewGuid(), DateTimeOffset.UtcNow, null, 1)]));
}

/// <summary>
/// The client on MassTransit's in-memory test harness against a fake service. Timeouts are tiny and the fake
/// decides per attempt whether to answer, so retry and deadline behaviour is exercised without sleeps.
/// </summary>
public sealed class DynamicWorkersClientTests : IAsyncLifetime
{
    static readonly string Thumbprint = new('a', 40);

    readonly FakeLeaseService _service = new();
    ServiceProvider _provider = null!;
    ITestHarness _harness = null!;

    /// <summary>As an app gets it from DI: attempts long enough that no answer is ever missed under load.</summary>
    DynamicWorkersClient Client => _provider.GetRequiredService<DynamicWorkersClient>();

    /// <summary>Tiny attempts, for the retry and deadline tests.</summary>
    DynamicWorkersClient Impatient
        => new(_harness.Bus, new DynamicWorkersClientOptions { AttemptTimeout = TimeSpan.FromMilliseconds(100) });

    public async Task InitializeAsync()
    {
        _provider = new ServiceCollection()
            .AddSingleton(_service)
            .AddMassTransitTestHarness(x => x.AddConsumer<FakeLeaseServiceConsumer>())
            .AddDynamicWorkersClient(o =>
            {
                o.AttemptTimeout = TimeSpan.FromSeconds(10);
                o.LeaseDeadline = TimeSpan.FromSeconds(20);
                o.QueryDeadline = TimeSpan.FromSeconds(20);
            })
            .BuildServiceProvider(true);
        _harness = _provider.GetRequiredService<ITestHarness>();
        await _harness.Start();
    }

    public async Task DisposeAsync()
    {
        await _harness.Stop();
        await _provider.DisposeAsync();
    }

    static LeaseGranted GrantFor(LeaseRequested r)
        => new(r.LeaseId, r.InstanceId, Guid.NewGuid(), "10.0.0.4:10933", new string('B', 40), false,
            DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddHours(1));

    [Fact]
    public async Task A_grant_is_returned_from_one_request_published_with_a_response_address()
    {
        _service.Answer = (r, _) => GrantFor(r);

        var result = await Client.RequestLeaseAsync("instance-1", Thumbprint, "ubuntu-22.04", taskId: "task-1");

        var granted = Assert.IsType<LeaseResult.Granted>(result);
        var attempt = Assert.Single(_service.Attempts);
        Assert.Equal(attempt.Message.LeaseId, granted.LeaseId);
        Assert.Equal("10.0.0.4:10933", granted.Lease.WorkerAddress);
        Assert.NotNull(attempt.ResponseAddress);
        Assert.Equal(("instance-1", "ubuntu-22.04", "task-1"),
            (attempt.Message.InstanceId, attempt.Message.Pool, attempt.Message.TaskId));
        Assert.True(await _harness.Published.Any<LeaseRequested>(),
            "the request is published, so the service needs no queue name");
    }

    [Fact]
    public async Task A_rejection_is_returned_typed_with_its_reason()
    {
        _service.Answer = (r, _) => new LeaseRejected(r.LeaseId, r.InstanceId, LeaseRejectionReasons.UnknownPool,
            "pool 'nope' does not exist");

        var result = await Client.RequestLeaseAsync("instance-1", Thumbprint, "nope");

        var rejected = Assert.IsType<LeaseResult.Rejected>(result);
        Assert.Equal(LeaseRejectionReasons.UnknownPool, rejected.Rejection.Reason);
    }

    [Fact]
    public async Task Unanswered_attempts_are_repeated_with_the_same_lease_id_until_one_is_answered()
    {
        var leaseId = Guid.NewGuid();
        _service.Answer = (r, attempt) => attempt < 3 ? null : GrantFor(r);

        var result = await Impatient.RequestLeaseAsync("instance-1", Thumbprint, "ubuntu-22.04", leaseId,
            deadline: TimeSpan.FromSeconds(20));

        Assert.Equal(leaseId, Assert.IsType<LeaseResult.Granted>(result).LeaseId);
        var attempts = _service.Attempts.ToList();
        // Three unless a loaded machine delayed an answer past its attempt, which adds another.
        Assert.True(attempts.Count >= 3, $"{attempts.Count} attempts");
        Assert.All(attempts, a => Assert.Equal(leaseId, a.Message.LeaseId));
        Assert.Single(attempts.Select(a => a.Message).Distinct());
        Assert.Equal(attempts.Count, attempts.Select(a => a.RequestId).Distinct().Count());
    }

    [Fact]
    public async Task No_answer_before_the_deadline_throws_a_timeout_that_carries_the_lease_id()
    {
        var leaseId = Guid.NewGuid();

        var e = await Assert.ThrowsAsync<DynamicWorkersTimeoutException>(
            () => Impatient.RequestLeaseAsync("instance-1", Thumbprint, "ubuntu-22.04", leaseId,
                deadline: TimeSpan.FromSeconds(3)));

        Assert.Equal(leaseId, e.LeaseId);
        Assert.True(_service.Attempts.Count >= 2,
            $"{_service.Attempts.Count} attempts: the request should have been repeated");
        Assert.All(_service.Attempts, a => Assert.Equal(leaseId, a.Message.LeaseId));
    }

    [Theory]
    [InlineData("abc; rm -rf /")]
    [InlineData("")]
    [InlineData("AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01")]
    public async Task A_bad_thumbprint_fails_locally_and_nothing_is_published(string thumbprint)
    {
        await Assert.ThrowsAsync<ArgumentException>(
            () => Client.RequestLeaseAsync("instance-1", thumbprint, "ubuntu-22.04"));

        Assert.Empty(_service.Attempts);
        Assert.False(_harness.Published.Select<LeaseRequested>().Any());
    }

    [Fact]
    public async Task Release_pool_size_and_lifecycle_are_published_and_queries_answered()
    {
        var leaseId = Guid.NewGuid();
        await Client.ReleaseAsync(leaseId, "instance-1");
        await Client.SetPoolSizeAsync("ubuntu-22.04", 3, 12);
        await Client.SetPoolImageAsync("ubuntu-22.04", "image-2");
        await Client.SetInstanceLifecycleAsync(
            new SetInstanceLifecycle("instance-1", TimeSpan.FromMinutes(5), null, null));
        var status = await Client.GetPoolStatusAsync("windows-2022");
        var workers = await Client.GetWorkersAsync(instanceId: "instance-1");

        Assert.True(await _harness.Published.Any<LeaseReleased>(
            m => m.Context.Message == new LeaseReleased(leaseId, "instance-1")));
        Assert.True(await _harness.Published.Any<SetPoolSize>(
            m => m.Context.Message == new SetPoolSize("ubuntu-22.04", 3, 12)));
        Assert.True(await _harness.Published.Any<SetPoolImage>(
            m => m.Context.Message == new SetPoolImage("ubuntu-22.04", "image-2")));
        Assert.True(await _harness.Published.Any<SetInstanceLifecycle>(
            m => m.Context.Message.IdleTimeout == TimeSpan.FromMinutes(5)));
        Assert.Equal("windows-2022", Assert.Single(status.Pools).Pool);
        Assert.Equal("instance-1", Assert.Single(workers.Workers).TrustedInstanceId);
    }
}

public sealed class RabbitMqUriTests
{
    [Theory]
    [InlineData("amqp://dw:secret@rabbit:5673/dw-vhost", "rabbit", 5673, "dw-vhost", "dw", "secret", false)]
    [InlineData("amqp://rabbit", "rabbit", 5672, "/", "guest", "guest", false)]
    [InlineData("amqp://dw:dw@127.0.0.1:5672/", "127.0.0.1", 5672, "/", "dw", "dw", false)]
    [InlineData("amqp://dw:p%40ss@rabbit/%2F", "rabbit", 5672, "/", "dw", "p@ss", false)]
    [InlineData("amqps://dw:dw@rabbit/prod", "rabbit", 5671, "prod", "dw", "dw", true)]
    public void An_amqp_uri_gives_the_connection_settings(string uri, string host, int port, string vhost, string user,
        string password, bool tls)
        => Assert.Equal(new RabbitMqBus.Settings(host, port, vhost, user, password, tls),
            RabbitMqBus.Parse(new Uri(uri)));

    [Theory]
    [InlineData("http://rabbit:5672/")]
    [InlineData("rabbitmq://rabbit/")]
    public void Another_scheme_is_refused(string uri)
        => Assert.Throws<ArgumentException>(() => RabbitMqBus.Parse(new Uri(uri)));

    [Fact]
    public void The_password_never_appears_in_messages()
        => Assert.Equal("amqp://dw@rabbit:5672/%2F", RabbitMqBus.Redacted(new Uri("amqp://dw:secret@rabbit:5672/")));
}
