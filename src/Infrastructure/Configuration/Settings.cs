using System.ComponentModel.DataAnnotations;

namespace DynamicWorkers.Infrastructure.Configuration;

public enum TransportKind
{
    RabbitMq,
    InMemory,
}

public enum DatabaseProvider
{
    SqlServer,
    Postgres,
    Sqlite,
}

/// <summary>Root key <c>Transport</c>: which broker the bus talks to.</summary>
public sealed class TransportOptions
{
    public TransportKind Transport { get; set; } = TransportKind.RabbitMq;
}

/// <summary>How the services' durable queues are declared.</summary>
public enum RabbitMqQueueType
{
    /// <summary>
    /// Replicated on every cluster node (a Raft majority must be up): losing one node loses no message.
    /// </summary>
    Quorum,

    /// <summary>
    /// On one node only: for a single broker, or queues declared classic before (see docs/operations.md).
    /// </summary>
    Classic,
}

/// <summary>Section <c>RabbitMq</c>.</summary>
public sealed class RabbitMqOptions : IValidatableObject
{
    public const string Section = "RabbitMq";

    [Required(AllowEmptyStrings = false)]
    public string Host { get; set; } = "localhost";

    [Range(1, 65535)]
    public int Port { get; set; } = 5672;

    [Required(AllowEmptyStrings = false)]
    public string VirtualHost { get; set; } = "/";

    [Required(AllowEmptyStrings = false)]
    public string Username { get; set; } = "guest";

    [Required(AllowEmptyStrings = false)]
    public string Password { get; set; } = "guest";

    /// <summary>Messages fetched ahead per receive endpoint.</summary>
    [Range(1, 1000)]
    public int PrefetchCount { get; set; } = 32;

    /// <summary>
    /// The type of every durable queue the services declare; temporary (auto-delete, exclusive) queues stay classic.
    /// </summary>
    public RabbitMqQueueType QueueType { get; set; } = RabbitMqQueueType.Quorum;

    /// <summary>
    /// The cluster's nodes as <c>host</c> or <c>host:port</c>, tried in this order when connecting and again after a
    /// lost connection; empty means <see cref="Host"/> and <see cref="Port"/> alone.
    /// </summary>
    public string[]? ClusterNodes { get; set; }

    /// <summary>
    /// The nodes to connect to, in order: <see cref="ClusterNodes"/>, else <see cref="Host"/>:<see cref="Port"/>.
    /// </summary>
    public IReadOnlyList<(string Host, int Port)> Nodes()
        => ClusterNodes is { Length: > 0 } nodes ? nodes.Select(n => ParseNode(n) ?? (n, Port)).ToList()
            : [(Host, Port)];

    (string Host, int Port)? ParseNode(string node) => node.Split(':') switch
    {
        [var host] when host.Trim().Length > 0 => (host.Trim(), Port),
        [var host, var port] when host.Trim().Length > 0 && int.TryParse(port, out var p) && p is > 0 and <= 65535
            => (host.Trim(), p),
        _ => null,
    };

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var node in ClusterNodes ?? [])
        {
            if (ParseNode(node) is null)
            {
                yield return new ValidationResult($"RabbitMq:ClusterNodes: '{node}' is not host or host:port");
            }
        }
    }
}

/// <summary>
/// Section <c>Retry</c>: how often a failing message is tried before it goes to its endpoint's <c>_error</c>
/// queue. Unset lists keep the defaults (arrays, since the configuration binder would append to a default list).
/// </summary>
public sealed class RetryOptions
{
    public const string Section = "Retry";

    /// <summary>Retries in place, right after a failure (default 0.2 s, 1 s, 3 s).</summary>
    public TimeSpan[]? Intervals { get; set; }

    /// <summary>
    /// Then redeliveries later, through the durable scheduler (default 5 s, 15 s, 30 s, 1 min, 2 min).
    /// </summary>
    public TimeSpan[]? Redeliveries { get; set; }

    public TimeSpan[] EffectiveIntervals => Intervals is { Length: > 0 } i
        ? i
        : [TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3)];

    public TimeSpan[] EffectiveRedeliveries => Redeliveries is { Length: > 0 } r ? r
        : [TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(1),
            TimeSpan.FromMinutes(2)];
}

/// <summary>Section <c>Database</c> plus <c>ConnectionStrings:Default</c>.</summary>
public sealed class DatabaseOptions
{
    public const string Section = "Database";

    public DatabaseProvider Provider { get; set; } = DatabaseProvider.Sqlite;

    /// <summary>Bound from <c>ConnectionStrings:Default</c>, not from the <c>Database</c> section.</summary>
    [Required(AllowEmptyStrings = false, ErrorMessage = "ConnectionStrings:Default is required")]
    public string ConnectionString { get; set; } = "";
}

public enum SchedulerStore
{
    /// <summary>Quartz's clustered ADO.NET job store in the configured database: survives restarts.</summary>
    Database,

    /// <summary>Quartz's RAM store: timers die with the process. Only for throwaway runs.</summary>
    Memory,
}

/// <summary>Section <c>Scheduler</c>: the Quartz endpoint that delivers every scheduled message.</summary>
public sealed class SchedulerOptions
{
    public const string Section = "Scheduler";

    /// <summary>The queue the scheduler endpoint consumes; every host sends schedules there.</summary>
    [Required(AllowEmptyStrings = false)]
    public string QueueName { get; set; } = "quartz";

    public SchedulerStore Store { get; set; } = SchedulerStore.Database;

    /// <summary>
    /// How often a clustered node checks in; a dead node's timers are taken over after about this plus 7.5 s.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00.5", "00:10:00")]
    public TimeSpan ClusterCheckinInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A timer overdue by more than this is treated as misfired and fires at once on recovery.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan MisfireThreshold { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Jobs fired in parallel by one node.</summary>
    [Range(1, 256)]
    public int MaxConcurrency { get; set; } = 16;

    /// <summary>
    /// Database connections of the scheduler, in a pool of its own: its work queues on one cluster lock, and waiting
    /// schedules must not hold the connections the sagas need. A node stores one schedule fewer than this at once
    /// (cancels go in batches, see SchedulerRegistration.UseSchedulerOptions).
    /// </summary>
    [Range(2, 100)]
    public int MaxConnections { get; set; } = 6;

    /// <summary>
    /// How long a schedule waits, not yet stored, for its cancel (most timers are cancelled within a second of being
    /// set): one cancelled meanwhile is never written. Zero stores every schedule at once. See HeldSchedules.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:05:00")]
    public TimeSpan HoldLimit { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Schedules held at once per node (each an unacknowledged message of a few kilobytes); beyond, stored at once.
    /// </summary>
    [Range(0, 20000)]
    public int MaxHeld { get; set; } = 1000;
}

/// <summary>
/// Section <c>Http</c>: the one port serving health, metrics (and, on the lease-saga host, the API and dashboard).
/// </summary>
public sealed class HttpOptions
{
    public const string Section = "Http";

    /// <summary>0 picks a free port (tests); the chosen address is logged at start.</summary>
    [Range(0, 65535)]
    public int Port { get; set; } = 8080;

    /// <summary>
    /// Interface to listen on: loopback unless asked, so nothing is offered to the network by accident (compose sets
    /// 0.0.0.0).
    /// </summary>
    [Required(AllowEmptyStrings = false)]
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>
    /// When set, every path but <c>/healthz</c>, <c>/readyz</c>, <c>/metrics</c> and the dashboard page (which holds no
    /// data) needs <c>Authorization: Bearer</c> this token; empty or unset leaves the API open.
    /// </summary>
    public string? ApiToken { get; set; }
}

/// <summary>
/// Section <c>Tenancy</c>: who may send what on a shared broker. Each message's sender is the AMQP <c>user_id</c>
/// RabbitMQ validated against the connection's user; an instance's user is <see cref="InstanceUserPrefix"/> + its id.
/// </summary>
public sealed class TenancyOptions
{
    public const string Section = "Tenancy";

    /// <summary>
    /// Check senders (RabbitMQ only: the in-memory bus has no identities). Off: every sender is trusted.
    /// </summary>
    public bool Authenticate { get; set; } = true;

    [Required(AllowEmptyStrings = false)]
    public string InstanceUserPrefix { get; set; } = "instance-";

    /// <summary>
    /// The services' own users (this host's <c>RabbitMq:Username</c> always counts): they may send anything.
    /// </summary>
    public List<string> ServiceUsers { get; set; } = ["dw-lease-saga", "dw-provisioner", "dw-trust", "dw-reaper"];

    /// <summary>Users that may send the public contract's operator commands and queries, for any instance.</summary>
    public List<string> OperatorUsers { get; set; } = ["dw-operator"];
}
