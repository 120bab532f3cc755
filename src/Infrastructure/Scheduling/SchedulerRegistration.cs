using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Persistence;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Data.SqlClient;
using Quartz;

namespace DynamicWorkers.Infrastructure.Scheduling;

public static class SchedulerRegistration
{
    /// <summary>The scheduler's own connection pool (and how its sessions show in the database's activity view).</summary>
    const string PoolName = "dynamic-workers-scheduler";

    /// <summary>
    /// The scheduler endpoint: consumers of <c>ScheduleMessage</c>/<c>CancelScheduledMessage</c> on queue
    /// <c>Scheduler:QueueName</c>, and a Quartz scheduler whose job store lives in the configured database
    /// (clustered on SQL Server and PostgreSQL, so any number of hosts may run it and each timer fires once;
    /// SQLite is single-process). Quartz creates its own tables if they are missing.
    /// </summary>
    internal static void AddSchedulerEndpoint(this IBusRegistrationConfigurator bus, IConfiguration configuration)
    {
        var options = configuration.GetSection(SchedulerOptions.Section).GetValidated<SchedulerOptions>();
        void Endpoint(IEndpointRegistrationConfigurator e)
        {
            e.Name = options.QueueName;
            // Room for the held schedules and whole batches of cancels besides the schedules being stored.
            var inFlight = options.MaxHeld + CancelBatch.MessageLimit * CancelBatch.ConcurrencyLimit + options.MaxConnections;
            e.PrefetchCount = inFlight;
            e.ConcurrentMessageLimit = inFlight;
        }

        // The held ones wait for their cancel; of the others, HeldSchedules.StoreSlots lets one fewer than the scheduler's
        // connections store at once.
        bus.AddConsumer<ScheduleMessageConsumer>(c => c.ConcurrentMessageLimit = options.MaxHeld + options.MaxConnections - 1).Endpoint(Endpoint);
        bus.AddConsumer<CancelScheduledMessageConsumer>(c => c.Options<BatchOptions>(b => b
                .SetMessageLimit(CancelBatch.MessageLimit)
                .SetTimeLimit(CancelBatch.TimeLimit)
                .SetConcurrencyLimit(CancelBatch.ConcurrencyLimit)))
            .Endpoint(Endpoint);
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
                // Take up to a thread pool's worth of due timers per turn of the cluster lock, not one: a burst of timers
                // falling due together (a flood's allocation timeouts) then fires at the pace of the jobs, not of the lock.
                s.MaxBatchSize = options.MaxConcurrency;
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
                        store.UseSqlServer(new SqlConnectionStringBuilder(database.ConnectionString)
                        {
                            ApplicationName = PoolName,
                            MaxPoolSize = options.MaxConnections,
                        }.ConnectionString);
                        break;
                    case DatabaseProvider.Postgres:
                        store.UsePostgres(PostgresConnections.Tuned(database.ConnectionString, c =>
                        {
                            c.ApplicationName = PoolName;
                            c.MaxPoolSize = options.MaxConnections;
                        }));
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
                    // Most timers are scheduled and cancelled, never fired: on PostgreSQL a new trigger needs no cluster
                    // lock (firing still takes it). Quartz keeps the lock on SQL Server, where inserts can deadlock without it.
                    o.LockOnInsert = database.Provider != DatabaseProvider.Postgres;
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
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<HeldSchedules>();
        // After Quartz's, so it stops first: what is held is stored while Quartz still runs.
        services.AddHostedService<StoreHeldSchedulesOnStop>();
    }
}
