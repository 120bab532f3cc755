using DynamicWorkers.Contracts;
using DynamicWorkers.Infrastructure.Configuration;
using MassTransit;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Infrastructure.Messaging;

public enum SenderKind
{
    /// <summary>One of the services: may send anything.</summary>
    Service,

    /// <summary>May send the public contract's operator commands and queries, for any instance.</summary>
    Operator,

    /// <summary>May send only its own lease requests, releases, and worker and lease queries.</summary>
    Instance,

    /// <summary>No <c>user_id</c>, or a user that is none of the above: may send nothing.</summary>
    Unknown,
}

/// <summary>
/// Who sent a message, from the AMQP <c>user_id</c> RabbitMQ checked against the sending connection's user.
/// </summary>
public sealed record Sender(SenderKind Kind, string? User, string? InstanceId)
{
    public static readonly Sender Trusted = new(SenderKind.Service, null, null);

    public override string ToString() => Kind switch
    {
        SenderKind.Instance => $"instance '{InstanceId}'",
        SenderKind.Unknown => User is null ? "a sender without user_id"
            : $"user '{User}' (no instance, operator or service user)",
        _ => $"{Kind.ToString().ToLowerInvariant()} user '{User}'",
    };
}

/// <summary>Tells who sent a message and whether that sender may send it (the DESIGN's "Tenancy" rules).</summary>
public sealed class SenderIdentity
{
    readonly bool _enforced;
    readonly TenancyOptions _tenancy;
    readonly HashSet<string> _serviceUsers;
    readonly HashSet<string> _operatorUsers;

    public SenderIdentity(IOptions<TenancyOptions> tenancy, IOptions<TransportOptions> transport,
        IOptions<RabbitMqOptions> rabbitMq)
    {
        _tenancy = tenancy.Value;
        _enforced = _tenancy.Authenticate && transport.Value.Transport == TransportKind.RabbitMq;
        _serviceUsers = new HashSet<string>(_tenancy.ServiceUsers, StringComparer.Ordinal) { rabbitMq.Value.Username };
        _operatorUsers = new HashSet<string>(_tenancy.OperatorUsers, StringComparer.Ordinal);
    }

    /// <summary>False on the in-memory bus and with <c>Tenancy:Authenticate</c> off: every sender is trusted.</summary>
    public bool Enforced => _enforced;

    public Sender Of(ConsumeContext context)
    {
        if (!_enforced)
        {
            return Sender.Trusted;
        }

        // A payload, not a cast: the outbox and retry wrap the transport's receive context.
        var user = context.ReceiveContext.TryGetPayload(out RabbitMqBasicConsumeContext? rabbit)
            && rabbit.Properties.IsUserIdPresent() ? rabbit.Properties.UserId : null;
        return Classify(user);
    }

    public Sender Classify(string? user)
    {
        if (string.IsNullOrEmpty(user))
        {
            return new Sender(SenderKind.Unknown, null, null);
        }

        if (_serviceUsers.Contains(user))
        {
            return new Sender(SenderKind.Service, user, null);
        }

        if (_operatorUsers.Contains(user))
        {
            return new Sender(SenderKind.Operator, user, null);
        }

        return user.StartsWith(_tenancy.InstanceUserPrefix, StringComparison.Ordinal)
            && user.Length > _tenancy.InstanceUserPrefix.Length
            ? new Sender(SenderKind.Instance, user, user[_tenancy.InstanceUserPrefix.Length..])
            : new Sender(SenderKind.Unknown, user, null);
    }

    /// <summary>Why <paramref name="sender"/> may not send <paramref name="message"/>, or null when it may.</summary>
    public static string? Refusal(object message, Sender sender)
    {
        if (sender.Kind == SenderKind.Service)
        {
            return null;
        }

        if (message.GetType().Namespace != typeof(LeaseRequested).Namespace)
        {
            return $"{message.GetType().Name} is internal: only the services' users may send it, not {sender}";
        }

        return sender.Kind switch
        {
            SenderKind.Operator => null,
            SenderKind.Unknown
                => $"{message.GetType().Name} from {sender}: only instance, operator and service users may send",
            _ => message switch
            {
                LeaseRequested m => Own(m.InstanceId, sender),
                LeaseReleased m => Own(m.InstanceId, sender),
                GetWorkers m => m.InstanceId is null
                    ? $"an instance lists only its own workers: GetWorkers needs InstanceId '{sender.InstanceId}'"
                    : Own(m.InstanceId, sender),
                GetLeases m => m.InstanceId is null
                    ? $"an instance lists only its own leases: GetLeases needs InstanceId '{sender.InstanceId}'"
                    : Own(m.InstanceId, sender),
                _ => $"{message.GetType().Name} is an operator command; {sender} may not send it",
            },
        };
    }

    static string? Own(string instanceId, Sender sender)
        => instanceId == sender.InstanceId ? null : $"InstanceId '{instanceId}' is not the sender's own ({sender})";
}
