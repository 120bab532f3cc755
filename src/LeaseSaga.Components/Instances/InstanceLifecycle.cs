using DynamicWorkers.Contracts;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Persistence;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Instances;

/// <summary>An instance's overrides of the lifecycle defaults (null: use the default). Persisted.</summary>
public sealed class InstanceLifecycle
{
    public string InstanceId { get; set; } = "";
    public TimeSpan? IdleTimeout { get; set; }
    public TimeSpan? MaxWorkerAge { get; set; }
    public TimeSpan? MaxLeaseDuration { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>The limits in force for one instance (or the defaults, for workers that trust no one yet).</summary>
public sealed record EffectiveLifecycle(TimeSpan IdleTimeout, TimeSpan MaxWorkerAge, TimeSpan MaxLeaseDuration);

/// <summary>
/// The effective limits: an instance's overrides (read with the rows a step needs anyway), else <c>Lifecycle:*</c>.
/// Applies from the next timer on.
/// </summary>
public sealed class InstanceLifecycles(IOptionsMonitor<LifecycleOptions> defaults)
{
    public EffectiveLifecycle With(TimeSpan? idleTimeout, TimeSpan? maxWorkerAge, TimeSpan? maxLeaseDuration)
    {
        var d = defaults.CurrentValue;
        return new EffectiveLifecycle(
            idleTimeout ?? d.IdleTimeout, maxWorkerAge ?? d.MaxWorkerAge, maxLeaseDuration ?? d.MaxLeaseDuration);
    }
}

/// <summary>
/// Stores <c>SetInstanceLifecycle</c>; a null field leaves that limit as it was. Absurd values go to the error queue.
/// </summary>
public sealed class SetInstanceLifecycleConsumer(
    DynamicWorkersDbContext db,
    TimeProvider clock,
    ILogger<SetInstanceLifecycleConsumer> logger)
    : IConsumer<SetInstanceLifecycle>
{
    static readonly TimeSpan Longest = TimeSpan.FromDays(365);

    public async Task Consume(ConsumeContext<SetInstanceLifecycle> context)
    {
        var m = context.Message;
        if (string.IsNullOrWhiteSpace(m.InstanceId) || m.InstanceId.Length > 200)
        {
            throw new ArgumentException("SetInstanceLifecycle: InstanceId must be 1 to 200 characters");
        }

        Check(nameof(m.IdleTimeout), m.IdleTimeout);
        Check(nameof(m.MaxWorkerAge), m.MaxWorkerAge);
        Check(nameof(m.MaxLeaseDuration), m.MaxLeaseDuration);

        var row = await db.Set<InstanceLifecycle>()
            .SingleOrDefaultAsync(x => x.InstanceId == m.InstanceId, context.CancellationToken);
        if (row is null)
        {
            row = new InstanceLifecycle { InstanceId = m.InstanceId };
            db.Add(row);
        }

        row.IdleTimeout = m.IdleTimeout ?? row.IdleTimeout;
        row.MaxWorkerAge = m.MaxWorkerAge ?? row.MaxWorkerAge;
        row.MaxLeaseDuration = m.MaxLeaseDuration ?? row.MaxLeaseDuration;
        row.UpdatedAt = clock.GetUtcNow();
        await db.SaveChangesAsync(context.CancellationToken);
        logger.LogInformation(
            "Instance {InstanceId} lifecycle: idle {IdleTimeout}, max worker age {MaxWorkerAge}, "
            + "max lease {MaxLeaseDuration}",
            m.InstanceId, row.IdleTimeout, row.MaxWorkerAge, row.MaxLeaseDuration);
    }

    static void Check(string name, TimeSpan? value)
    {
        if (value is { } v && (v <= TimeSpan.Zero || v > Longest))
        {
            throw new ArgumentException(
                $"SetInstanceLifecycle: {name} must be more than zero and at most 365 days, got {v}");
        }
    }
}
