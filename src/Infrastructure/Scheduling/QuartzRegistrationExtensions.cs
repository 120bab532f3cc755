using MassTransit;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace DynamicWorkers.Infrastructure.Scheduling;

/// <summary>
/// The scheduler consumers registered as MassTransit.Quartz registers its own, so switching to that package changes
/// only the using directive (and drops the departures <see cref="QuartzEndpointOptions"/> turns on).
/// </summary>
public static class QuartzRegistrationExtensions
{
    /// <summary>
    /// The consumers of <c>ScheduleMessage</c> and <c>CancelScheduledMessage</c> on the endpoint of
    /// <see cref="QuartzEndpointDefinition"/>. Quartz itself is registered with <c>services.AddQuartz</c>.
    /// </summary>
    public static void AddQuartzConsumers(this IBusRegistrationConfigurator configurator,
        Action<QuartzEndpointOptions>? configure = null)
    {
        var options = configurator.AddOptions<QuartzEndpointOptions>();
        if (configure is not null)
        {
            options.Configure(configure);
        }

        configurator.TryAddSingleton(TimeProvider.System);
        configurator.TryAddSingleton<HeldSchedules>();
        configurator.TryAddSingleton<QuartzEndpointDefinition>();

        configurator.AddConsumer<ScheduleMessageConsumer, ScheduleMessageConsumerDefinition>();
        configurator.AddConsumer<CancelScheduledMessageConsumer, CancelScheduledMessageConsumerDefinition>();
    }
}
