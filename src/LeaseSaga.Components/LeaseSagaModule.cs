using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Instances;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Queries;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Quartz;

namespace DynamicWorkers.LeaseSaga;

/// <summary>
/// What the lease-saga service adds to a host: its database, pools, lifecycle and endpoints. Standalone uses it too.
/// </summary>
public static class LeaseSagaModule
{
    public static IServiceCollection AddLeaseSagaServices(this IServiceCollection services,
        IConfiguration configuration)
    {
        services.AddDynamicWorkersDatabase<DynamicWorkersDbContext>(configuration, DynamicWorkersDbContext.Pool);
        services.AddLeaseSagaOptions(configuration);
        services.AddScoped<InstanceLifecycles>();
        services.AddScoped<OpsQueries>();
        services.AddScoped<Allocator>();
        services.AddScoped<AdaptiveHotTarget>();
        services.ConfigureAllQuartzSchedulers(HotTargetJob.Schedule);
        services.AddSingleton<TurnAwayWarnings>();
        services.AddSingleton<PoolHistory>();
        services.AddHostedService<PoolGauges>();
        services.AddHostedService<PoolReconciler>();
        services.AddHostedService<EndedLeasePurge>();
        return services;
    }

    /// <summary>Pools and lifecycle settings, validated at start; pools follow a reloaded configuration.</summary>
    public static IServiceCollection AddLeaseSagaOptions(this IServiceCollection services, IConfiguration configuration)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddOptions<PoolsOptions>()
            .Configure(o => configuration.GetSection(PoolsOptions.Section).Bind(o.Pools))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<PoolsOptions>, PoolsOptionsValidator>();
        // A bare Configure registers no change source: without it a reloaded configuration would never reach the pools.
        services.AddSingleton<IOptionsChangeTokenSource<PoolsOptions>>(
            new ConfigurationChangeTokenSource<PoolsOptions>(configuration.GetSection(PoolsOptions.Section)));
        services.AddSingleton<IOptionsMonitor<PoolsOptions>, LastValidPoolsMonitor>();
        services.AddValidatedOptions<LifecycleOptions>(configuration.GetSection(LifecycleOptions.Section));
        services.AddValidatedOptions<RetentionOptions>(configuration.GetSection(RetentionOptions.Section));
        return services;
    }

    public static void AddLeaseSagaEndpoints(this IBusRegistrationConfigurator bus)
    {
        bus.AddSagaStateMachine<LeaseStateMachine, LeaseState, LeaseStateDefinition>()
            .EntityFrameworkRepository(r =>
            {
                r.ConcurrencyMode = ConcurrencyMode.Optimistic;
                r.ExistingDbContext<DynamicWorkersDbContext>();
            });
        bus.AddSagaStateMachine<WorkerStateMachine, WorkerState, WorkerStateDefinition>()
            .EntityFrameworkRepository(r =>
            {
                r.ConcurrencyMode = ConcurrencyMode.Optimistic;
                r.ExistingDbContext<DynamicWorkersDbContext>();
            });
        bus.AddConsumer<PoolKeeper, PoolKeeperDefinition>();
        bus.AddConsumer<SetInstanceLifecycleConsumer>();
        bus.AddConsumer<RemoveInstanceConsumer>();
        bus.AddConsumer<GetPoolStatusConsumer>();
        bus.AddConsumer<GetWorkersConsumer>();
        bus.AddConsumer<GetLeasesConsumer>();
        bus.AddConsumer<SweepOverdueTimersConsumer>();
    }
}
