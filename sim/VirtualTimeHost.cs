using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.LeaseSaga;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Simulator;

/// <summary>
/// The LeaseSaga's state machines, allocation and pool keeper on the in-memory bus, on a <see cref="VirtualClock"/>,
/// with a <see cref="VirtualScheduler"/> in place of the Quartz endpoint: the simulation's host, and the unit tests'.
/// The caller adds the cloud (and anything else the LeaseSaga talks to).
/// </summary>
public static class VirtualTimeHost
{
    const string SchedulerQueue = "quartz";

    public static IServiceCollection AddVirtualTimeLeaseSaga(
        this IServiceCollection services, IConfiguration configuration, VirtualClock clock)
    {
        services.AddSingleton(clock);
        services.AddSingleton<TimeProvider>(clock);
        services.AddSingleton<VirtualScheduler>();
        // The in-memory bus has no identities, so every sender is trusted.
        services.AddSingleton(new SenderIdentity(
            Options.Create(new TenancyOptions()),
            Options.Create(new TransportOptions { Transport = TransportKind.InMemory }),
            Options.Create(new RabbitMqOptions())));
        return services.AddLeaseSagaServices(configuration);
    }

    /// <summary>
    /// The bus of such a host: what <paramref name="configure"/> adds first (an endpoints callback added there is
    /// outermost), then the service's endpoint defaults, the LeaseSaga's endpoints and the virtual scheduler's.
    /// </summary>
    public static void AddVirtualTimeLeaseSagaEndpoints(this IBusRegistrationConfigurator bus,
        Action<IBusRegistrationConfigurator> configure)
    {
        var scheduler = new Uri($"queue:{SchedulerQueue}");
        bus.SetKebabCaseEndpointNameFormatter();
        bus.AddMessageScheduler(scheduler);
        configure(bus);
        bus.AddConfigureEndpointsCallback((context, _, endpoint) =>
            BusRegistration.ApplyEndpointDefaults(endpoint, context));
        bus.AddLeaseSagaEndpoints();
        bus.AddConsumer<VirtualScheduleConsumer>().Endpoint(e => e.Name = SchedulerQueue);
        bus.AddConsumer<VirtualCancelConsumer>().Endpoint(e => e.Name = SchedulerQueue);
        bus.UsingInMemory((context, cfg) =>
        {
            cfg.UseMessageScheduler(scheduler);
            cfg.ConfigureEndpoints(context);
        });
    }
}
