namespace DynamicWorkers.Infrastructure.Scheduling;

/// <summary>
/// The scheduler endpoint, as MassTransit.Quartz's options of the same name, plus this project's departures from
/// MassTransit's consumers: holding schedules for their cancel, limiting concurrent stores and batching cancels.
/// Each departure is off while its setting is unset.
/// </summary>
public sealed class QuartzEndpointOptions
{
    public string QueueName { get; set; } = "quartz";

    public int? PrefetchCount { get; set; } = 32;

    public int? ConcurrentMessageLimit { get; set; }

    /// <summary>
    /// How long a schedule waits, not yet stored, for its cancel (see <see cref="HeldSchedules"/>); unset or zero
    /// stores every schedule at once.
    /// </summary>
    public TimeSpan? HoldSchedulesFor { get; set; }

    /// <summary>Schedules held at once; beyond, stored at once.</summary>
    public int MaxHeld { get; set; }

    /// <summary>Schedules stored at once, so that fewer wait for a connection; unset: no limit.</summary>
    public int? ConcurrentStoreLimit { get; set; }

    /// <summary>
    /// Cancels removed together under one cluster lock of Quartz; unset removes each on its own.
    /// </summary>
    public int? CancelBatchMessageLimit { get; set; }

    /// <summary>How long a batch of cancels waits to fill.</summary>
    public TimeSpan CancelBatchTimeLimit { get; set; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Batches of cancels removed at once.</summary>
    public int CancelBatchConcurrencyLimit { get; set; } = 1;
}
