using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.Infrastructure.Scheduling;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace DynamicWorkers.UnitTests.Scheduling;

/// <summary>The saga repository and the scheduler endpoint, registered as MassTransit's packages do.</summary>
public sealed class InfrastructureRegistrationTests
{
    [Fact]
    public void The_scheduler_settings_turn_on_holding_and_batching_sized_as_the_endpoint_needs()
    {
        var endpoint = new QuartzEndpointOptions();
        endpoint.UseSchedulerOptions(new SchedulerOptions { QueueName = "timers", MaxHeld = 1000, MaxConnections = 6 });

        Assert.Equal("timers", endpoint.QueueName);
        Assert.Equal(TimeSpan.FromSeconds(30), endpoint.HoldSchedulesFor);
        Assert.Equal(5, endpoint.ConcurrentStoreLimit);
        Assert.Equal(64, endpoint.CancelBatchMessageLimit);
        Assert.Equal(TimeSpan.FromMilliseconds(20), endpoint.CancelBatchTimeLimit);
        Assert.Equal(2, endpoint.CancelBatchConcurrencyLimit);
        Assert.Equal(1000 + 64 * 2 + 6, endpoint.PrefetchCount);
        Assert.Equal(endpoint.PrefetchCount, endpoint.ConcurrentMessageLimit);
    }

    [Fact]
    public void The_departures_are_off_unless_set()
    {
        var endpoint = new QuartzEndpointOptions();

        Assert.Null(endpoint.HoldSchedulesFor);
        Assert.Equal(0, endpoint.MaxHeld);
        Assert.Null(endpoint.ConcurrentStoreLimit);
        Assert.Null(endpoint.CancelBatchMessageLimit);
    }

    [Fact]
    public void Both_scheduler_consumers_share_the_endpoint_of_its_definition()
    {
        var services = new ServiceCollection();
        services.AddMassTransit(x => x.AddQuartzConsumers(o => o.UseSchedulerOptions(new SchedulerOptions())));
        using var provider = services.BuildServiceProvider();

        var definition = provider.GetRequiredService<QuartzEndpointDefinition>();
        var formatter = KebabCaseEndpointNameFormatter.Instance;
        Assert.Equal("quartz", ((IEndpointDefinition)definition).GetEndpointName(formatter));
        Assert.Equal(1000 + 64 * 2 + 6, definition.PrefetchCount);
        var schedule = provider.GetRequiredService<IConsumerDefinition<ScheduleMessageConsumer>>();
        var cancel = provider.GetRequiredService<IConsumerDefinition<CancelScheduledMessageConsumer>>();
        Assert.Equal("quartz", schedule.GetEndpointName(formatter));
        Assert.Equal("quartz", cancel.GetEndpointName(formatter));
        Assert.Equal(1000 + 5, schedule.ConcurrentMessageLimit);
    }

    [Fact]
    public void The_saga_repository_takes_the_existing_context_with_optimistic_concurrency()
    {
        var services = new ServiceCollection();
        services.AddMassTransit(x => x.AddSagaStateMachine<LeaseStateMachine, LeaseState>()
            .EntityFrameworkRepository(r =>
            {
                r.ConcurrencyMode = ConcurrencyMode.Optimistic;
                r.ExistingDbContext<DynamicWorkersDbContext>();
            }));

        Assert.Contains(services, d => d.ServiceType == typeof(ISagaRepository<LeaseState>));
    }

    [Fact]
    public void The_saga_repository_refuses_at_registration_what_it_does_not_implement()
    {
        var services = new ServiceCollection();
        services.AddMassTransit(x =>
        {
            // MassTransit's default is pessimistic: a registration must choose optimistic concurrency.
            var pessimistic = Assert.Throws<ConfigurationException>(() => x
                .AddSagaStateMachine<LeaseStateMachine, LeaseState>()
                .EntityFrameworkRepository(r => r.ExistingDbContext<DynamicWorkersDbContext>()));
            Assert.Contains("Optimistic", pessimistic.Message);

            var noContext = Assert.Throws<ConfigurationException>(() => x
                .AddSagaStateMachine<LeaseStateMachine, LeaseState>()
                .EntityFrameworkRepository(r => r.ConcurrencyMode = ConcurrencyMode.Optimistic));
            Assert.Contains("ExistingDbContext", noContext.Message);
        });
    }
}
