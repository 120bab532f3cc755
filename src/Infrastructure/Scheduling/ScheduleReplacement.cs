using MassTransit;

namespace DynamicWorkers.Infrastructure.Scheduling;

/// <summary>
/// A schedule that replaces an earlier one of the same saga: the scheduler endpoint removes the earlier trigger (or lets
/// it go while it is held) as it takes the new one, so a timer moved costs one delivery, not a later stale firing.
/// An earlier schedule that already fired, or is still on its way, fires and is ignored by its token, as before.
/// </summary>
public static class ScheduleReplacement
{
    /// <summary>The header, on the <c>ScheduleMessage</c>, naming the token of the schedule it replaces.</summary>
    public const string Header = "DW-Replaces-Schedule";

    public static IPipe<SendContext<T>> Of<T>(Guid? replaced)
        where T : class
        => Pipe.Execute<SendContext<T>>(context =>
        {
            if (replaced is { } token)
            {
                context.Headers.Set(Header, token.ToString("N"));
            }
        });
}
