using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Persistence;
using Microsoft.Data.SqlClient;
using Quartz;

namespace DynamicWorkers.Infrastructure.Scheduling;

public static class SchedulerRegistration
{
    /// <summary>
    /// The scheduler's own connection pool (and how its sessions show in the database's activity view).
    /// </summary>
    const string PoolName = "dynamic-workers-scheduler";

    /// <summary>
    /// <c>Scheduler:*</c> as the endpoint's options, both departures on: schedules held for their cancel
    /// (<c>Scheduler:HoldLimit</c>, <c>Scheduler:MaxHeld</c>), one fewer stored at once than the scheduler has
    /// connections, and cancels removed in batches, since removing a trigger takes Quartz's cluster lock.
    /// </summary>
    public static void UseSchedulerOptions(this QuartzEndpointOptions endpoint, SchedulerOptions options)
    {
        endpoint.QueueName = options.QueueName;
        endpoint.HoldSchedulesFor = options.HoldLimit;
        endpoint.MaxHeld = options.MaxHeld;
        endpoint.ConcurrentStoreLimit = options.MaxConnections - 1;
        endpoint.CancelBatchMessageLimit = 64;
        endpoint.CancelBatchTimeLimit = TimeSpan.FromMilliseconds(20);
        endpoint.CancelBatchConcurrencyLimit = 2;
        // Room for the held schedules and whole batches of cancels besides the schedules being stored.
        var inFlight = endpoint.MaxHeld + endpoint.CancelBatchMessageLimit.Value * endpoint.CancelBatchConcurrencyLimit
            + options.MaxConnections;
        endpoint.PrefetchCount = inFlight;
        endpoint.ConcurrentMessageLimit = inFlight;
    }

    /// <summary>
    /// Quartz for the scheduler endpoint: its jobs, and a job store in the configured database (clustered on SQL Server
    /// and PostgreSQL, so any number of hosts may run it and each timer fires once; SQLite is single-process). Quartz
    /// creates its own tables if they are missing.
    /// </summary>
    public static void UseSchedulerOptions(this IQuartzBuilder q, SchedulerOptions options,
        DatabaseOptions database)
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
        q.AddJob<ScheduledMessageJob>(j => j
            .WithIdentity(ScheduledMessageData.JobName).StoreDurably().RequestRecovery());
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
                // lock (firing still takes it). Quartz keeps the lock on SQL Server, where inserts can deadlock
                // without it.
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
    }
}
