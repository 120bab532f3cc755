using DynamicWorkers.Infrastructure.Configuration;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Quartz;

namespace DynamicWorkers.Infrastructure.Scheduling;

public static class SchedulerRegistration
{
    /// <summary>
    /// The scheduler endpoint: consumers of <c>ScheduleMessage</c>/<c>CancelScheduledMessage</c> on queue
    /// <c>Scheduler:QueueName</c>, and a Quartz scheduler whose job store lives in the configured database
    /// (clustered on SQL Server and PostgreSQL, so any number of hosts may run it and each timer fires once;
    /// SQLite is single-process). Quartz creates its own tables if they are missing.
    /// </summary>
    internal static void AddSchedulerEndpoint(this IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        var queue = configuration.GetSection(SchedulerOptions.Section).GetValidated<SchedulerOptions>().QueueName;
        bus.AddConsumer<ScheduleMessageConsumer, SchedulerConsumerDefinition<ScheduleMessageConsumer>>().Endpoint(e => e.Name = queue);
        bus.AddConsumer<CancelScheduledMessageConsumer, SchedulerConsumerDefinition<CancelScheduledMessageConsumer>>().Endpoint(e => e.Name = queue);
    }

    /// <summary>Quartz itself; registered after MassTransit so that it stops (and drains its jobs) before the bus does.</summary>
    internal static void AddQuartzScheduler(this IServiceCollection services, IConfiguration configuration)
    {
        var options = configuration.GetSection(SchedulerOptions.Section).GetValidated<SchedulerOptions>();
        var database = configuration.GetSection(DatabaseOptions.Section)
            .GetValidated<DatabaseOptions>(o => o.ConnectionString = configuration.GetConnectionString("Default") ?? "");

        services.AddQuartz(q =>
        {
            q.ConfigureScheduler(s =>
            {
                // Every node of the cluster shares the name; each gets its own generated instance id.
                s.InstanceName = "dynamic-workers";
                s.GenerateInstanceId = true;
            });
            q.UseDefaultThreadPool(options.MaxConcurrency);
            q.AddJob<ScheduledMessageJob>(j => j.WithIdentity(ScheduledMessageData.JobName).StoreDurably().RequestRecovery());
            q.AddJob<CancelledScheduleJob>(j => j.WithIdentity(ScheduledMessageData.TombstoneJobName).StoreDurably());

            if (options.Store == SchedulerStore.Memory)
            {
                q.UseInMemoryStore();
                return;
            }

            q.UsePersistentStore(store =>
            {
                switch (database.Provider)
                {
                    case DatabaseProvider.SqlServer:
                        store.UseSqlServer(database.ConnectionString);
                        break;
                    case DatabaseProvider.Postgres:
                        store.UsePostgres(database.ConnectionString);
                        break;
                    case DatabaseProvider.Sqlite:
                        store.UseSqlite(database.ConnectionString);
                        break;
                }

                store.UseSystemTextJsonSerializer();
                store.ProvisionSchema();
                store.ConfigureStore(o =>
                {
                    o.StoreJobDataAsStrings = true;
                    o.MisfireThreshold = options.MisfireThreshold;
                });
                if (database.Provider != DatabaseProvider.Sqlite)
                {
                    store.UseClustering(c =>
                    {
                        c.CheckinInterval = options.ClusterCheckinInterval;
                        c.CheckinMisfireThreshold = options.ClusterCheckinInterval;
                    });
                }
            });
        });
        services.AddQuartzHostedService(o => o.WaitForJobsToComplete = true);
    }
}

/// <summary>Scheduler endpoint consumers: bounded concurrency; retry and outbox come from the bus defaults.</summary>
public sealed class SchedulerConsumerDefinition<TConsumer> : ConsumerDefinition<TConsumer>
    where TConsumer : class, IConsumer
{
    public SchedulerConsumerDefinition() => ConcurrentMessageLimit = 16;
}
