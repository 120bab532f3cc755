using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Messaging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.UnitTests;

/// <summary>The DESIGN's "Tenancy" rules: who may send which message.</summary>
public sealed class SenderIdentityTests
{
    static readonly SenderIdentity Identity = new(
        Options.Create(new TenancyOptions()),
        Options.Create(new TransportOptions { Transport = TransportKind.RabbitMq }),
        Options.Create(new RabbitMqOptions { Username = "dw-lease-saga" }));

    static readonly LeaseRequested RequestOfA =
        new(Guid.NewGuid(), "a", new string('a', 40), "pool", null, DateTimeOffset.UtcNow);

    [Theory]
    [InlineData("dw-lease-saga", SenderKind.Service, null)]
    [InlineData("dw-trust", SenderKind.Service, null)]
    [InlineData("dw-operator", SenderKind.Operator, null)]
    [InlineData("instance-a", SenderKind.Instance, "a")]
    [InlineData("instance-", SenderKind.Unknown, null)]
    [InlineData("guest", SenderKind.Unknown, null)]
    [InlineData(null, SenderKind.Unknown, null)]
    public void A_sender_is_told_by_its_user(string? user, SenderKind kind, string? instanceId)
    {
        var sender = Identity.Classify(user);
        Assert.Equal((kind, instanceId), (sender.Kind, sender.InstanceId));
    }

    [Fact]
    public void An_instance_sends_only_its_own_requests_releases_and_worker_and_lease_queries()
    {
        var a = Identity.Classify("instance-a");
        Assert.Null(SenderIdentity.Refusal(RequestOfA, a));
        Assert.Null(SenderIdentity.Refusal(new LeaseReleased(Guid.NewGuid(), "a"), a));
        Assert.Null(SenderIdentity.Refusal(new GetWorkers("pool", "a"), a));
        Assert.Null(SenderIdentity.Refusal(new GetLeases(null, "a"), a));

        Assert.NotNull(SenderIdentity.Refusal(RequestOfA with { InstanceId = "b" }, a));
        Assert.NotNull(SenderIdentity.Refusal(new LeaseReleased(Guid.NewGuid(), "b"), a));
        Assert.NotNull(SenderIdentity.Refusal(new GetWorkers("pool", null), a));
        Assert.NotNull(SenderIdentity.Refusal(new GetWorkers(null, "b"), a));
        Assert.NotNull(SenderIdentity.Refusal(new GetLeases("pool", null), a));
        Assert.NotNull(SenderIdentity.Refusal(new GetLeases(null, "b"), a));
        Assert.NotNull(SenderIdentity.Refusal(new GetPoolStatus(null), a));
        Assert.NotNull(SenderIdentity.Refusal(new SetPoolSize("pool", 1, 2), a));
        Assert.NotNull(SenderIdentity.Refusal(new SetPoolImage("pool", "image-2"), a));
        Assert.NotNull(SenderIdentity.Refusal(new SetInstanceLifecycle("a", null, null, TimeSpan.FromTicks(1)), a));
        Assert.NotNull(SenderIdentity.Refusal(new RemoveInstance("a", null), a));
    }

    [Fact]
    public void Only_services_send_internal_messages()
    {
        var trusted = new WorkerTrusted(Guid.NewGuid(), Guid.NewGuid(), "a", "thumb");
        Assert.Null(SenderIdentity.Refusal(trusted, Identity.Classify("dw-trust")));
        Assert.NotNull(SenderIdentity.Refusal(trusted, Identity.Classify("dw-operator")));
        Assert.NotNull(SenderIdentity.Refusal(trusted, Identity.Classify("instance-a")));
        Assert.NotNull(
            SenderIdentity.Refusal(new SweepOverdueTimers(TimeSpan.FromMinutes(-1)), Identity.Classify(null)));
    }

    [Fact]
    public void The_operator_sends_any_public_message_and_an_unknown_user_none()
    {
        Assert.Null(SenderIdentity.Refusal(new SetPoolSize("pool", 1, 2), Identity.Classify("dw-operator")));
        Assert.Null(SenderIdentity.Refusal(new SetPoolImage("pool", "image-2"), Identity.Classify("dw-operator")));
        Assert.Null(SenderIdentity.Refusal(new RemoveInstance("a", "offboarded"), Identity.Classify("dw-operator")));
        Assert.Null(SenderIdentity.Refusal(RequestOfA with { InstanceId = "b" }, Identity.Classify("dw-operator")));
        Assert.NotNull(SenderIdentity.Refusal(RequestOfA, Identity.Classify("guest")));
        Assert.NotNull(SenderIdentity.Refusal(RequestOfA, Identity.Classify(null)));
    }

    [Fact]
    public void The_users_dw_broker_setup_makes_are_the_ones_the_services_trust_by_default()
    {
        var defaults = new TenancyOptions();
        Assert.Equal(defaults.ServiceUsers.Order(), DynamicWorkers.Cli.BrokerUsers.Services.Keys.Order());
        Assert.Equal([DynamicWorkers.Cli.BrokerUsers.Operator], defaults.OperatorUsers);
        Assert.Equal(DynamicWorkers.Cli.BrokerUsers.InstancePrefix, defaults.InstanceUserPrefix);
    }

    [Fact]
    public void Without_authentication_every_sender_is_trusted()
    {
        var off = new SenderIdentity(Options.Create(new TenancyOptions { Authenticate = false }),
            Options.Create(new TransportOptions()), Options.Create(new RabbitMqOptions()));
        var inMemory = new SenderIdentity(Options.Create(new TenancyOptions()), Options.Create(
            new TransportOptions { Transport = TransportKind.InMemory }), Options.Create(new RabbitMqOptions()));
        Assert.False(off.Enforced);
        Assert.False(inMemory.Enforced);
        Assert.True(Identity.Enforced);
    }
}
