using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.Infrastructure.Scheduling;
using DynamicWorkers.Infrastructure.Telemetry;
using MassTransit;
using MassTransit.RabbitMqTransport;
using MassTransit.RabbitMqTransport.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Quartz;

namespace DynamicWorkers.Infrastructure.Messaging;

public static class BusRegistration
{
    /// <summary>
    /// The one MassTransit setup every host uses: the configured transport (<c>Transport</c> = RabbitMq |
    /// InMemory), kebab-case queue names, message retry and an in-memory outbox on every endpoint,
    /// OpenTelemetry hooks, and scheduling through the durable Quartz endpoint (queue <c>Scheduler:QueueName</c>).
    /// With <paramref name="hostScheduler"/> this host also runs that endpoint and its Quartz scheduler.
    /// </summary>
    public static IServiceCollection AddDynamicWorkersBus(
        this IServiceCollection services,
        IConfiguration configuration,
        Action<IBusRegistrationConfigurator> configure,
        bool hostScheduler = false)
    {
        services.AddTransportOptions(configuration);
        services.AddValidatedOptions<RabbitMqOptions>(configuration.GetSection(RabbitMqOptions.Section));
        services.AddValidatedOptions<SchedulerOptions>(configuration.GetSection(SchedulerOptions.Section));
        services.AddValidatedOptions<RetryOptions>(configuration.GetSection(RetryOptions.Section));
        services.AddValidatedOptions<TenancyOptions>(configuration.GetSection(TenancyOptions.Section));
        services.AddSingleton<SenderIdentity>();
        services.AddDynamicWorkersTelemetry();

        var transport = configuration.GetValidated<TransportOptions>().Transport;
        var scheduler = configuration.GetSection(SchedulerOptions.Section).GetValidated<SchedulerOptions>();
        var schedulerAddress = SchedulerAddress(configuration);
        if (transport == TransportKind.RabbitMq)
        {
            // Registered before MassTransit's hosted service, so the queues exist before this host sends anything.
            services.AddHostedService<SendQueueDeclarer>();
        }

        services.AddMassTransit(x =>
        {
            x.SetKebabCaseEndpointNameFormatter();
            // A production service does not report usage to MassTransit's servers (and here could not reach them).
            x.DisableUsageTelemetry();
            x.AddMessageScheduler(schedulerAddress);
            x.AddConfigureEndpointsCallback((context, _, endpoint) => ApplyEndpointDefaults(endpoint, context));
            if (hostScheduler)
            {
                x.AddQuartzConsumers(o => o.UseSchedulerOptions(scheduler));
            }

            configure(x);

            switch (transport)
            {
                case TransportKind.InMemory:
                    x.UsingInMemory((context, cfg) =>
                    {
                        cfg.UseMessageScheduler(schedulerAddress);
                        cfg.ConfigureEndpoints(context);
                    });
                    break;
                default:
                    x.UsingRabbitMq((context, cfg) =>
                    {
                        var rabbit = context.GetRequiredService<IOptions<RabbitMqOptions>>().Value;
                        cfg.Host(rabbit.Host, (ushort)rabbit.Port, rabbit.VirtualHost, h =>
                        {
                            h.Username(rabbit.Username);
                            h.Password(rabbit.Password);
                            if (rabbit.ClusterNodes is { Length: > 0 })
                            {
                                // A lost connection is made again to the next node in the list, so one node's loss only
                                // moves the host.
                                h.UseCluster(c =>
                                {
                                    foreach (var (host, port) in rabbit.Nodes())
                                    {
                                        c.Node($"{host}:{port}");
                                    }
                                });
                            }
                        });
                        cfg.PrefetchCount = rabbit.PrefetchCount;
                        cfg.SendAsUser(rabbit.Username);
                        cfg.UseMessageScheduler(schedulerAddress);
                        cfg.ConfigureEndpoints(context);
                    });
                    break;
            }
        });

        // "Application started" then means connected, with every queue and binding declared: nothing
        // published right after start-up can fall into an exchange that has no queue bound yet.
        services.Configure<MassTransitHostOptions>(o =>
        {
            o.WaitUntilStarted = true;
            o.StartTimeout = TimeSpan.FromMinutes(2);
            o.StopTimeout = TimeSpan.FromSeconds(30);
        });

        if (hostScheduler)
        {
            var database = configuration.GetSection(DatabaseOptions.Section).GetValidated<DatabaseOptions>(
                o => o.ConnectionString = configuration.GetConnectionString("Default") ?? "");
            // After MassTransit, so that Quartz stops (and drains its jobs) before the bus does.
            services.AddQuartz(q => q.UseSchedulerOptions(scheduler, database));
            services.AddQuartzHostedService(o => o.WaitForJobsToComplete = true);
            // After Quartz, so that it stops first: what is held is stored while Quartz still runs.
            services.AddHostedService<StoreHeldSchedulesOnStop>();
        }

        return services;
    }

    /// <summary>
    /// The scheduler endpoint every host sends <c>ScheduleMessage</c>/<c>CancelScheduledMessage</c> to: its exchange,
    /// since a <c>queue:</c> address would make every sender declare the queue without its queue type
    /// (<see cref="SendQueueDeclarer"/> declares it properly before the bus starts).
    /// </summary>
    public static Uri SchedulerAddress(IConfiguration configuration)
        => new($"exchange:{SchedulerQueueName(configuration)}");

    internal static string SchedulerQueueName(IConfiguration configuration)
        => configuration.GetSection(SchedulerOptions.Section).GetValidated<SchedulerOptions>().QueueName;

    /// <summary>
    /// Retry and outbox on every endpoint. Optimistic-concurrency losers (and duplicate-key inserts) retry
    /// quickly and often, backing off, since a conflict means another message made progress and the next
    /// attempt reloads the saga; any other failure gets a few spaced retries, then five scheduled
    /// redeliveries over about four minutes, and only then lands in the endpoint's <c>_error</c> queue.
    /// An <see cref="ArgumentException"/> (bad input) goes to <c>_error</c> at once.
    /// The outbox holds sends, publishes and schedules until the consumer (and the saga save) succeeded.
    /// </summary>
    public static void ApplyEndpointDefaults(IReceiveEndpointConfigurator endpoint, IRegistrationContext context)
    {
        // Outermost: a message that still fails (database or broker restarting) is redelivered later through
        // the durable scheduler instead of going to _error at once. Bad input is not retried at all.
        var retry = context.GetService<IOptions<RetryOptions>>()?.Value ?? new RetryOptions();
        endpoint.UseScheduledRedelivery(r =>
        {
            r.Ignore<Exception>(IsBadInput);
            r.Intervals(retry.EffectiveRedeliveries);
        });
        endpoint.UseMessageRetry(r =>
        {
            r.Ignore<Exception>(IsBadInput);
            r.Intervals(retry.EffectiveIntervals);
        });
        endpoint.UseMessageRetry(r =>
        {
            r.Handle<Exception>(e => DbConflicts.IsConflict(e.GetBaseException()) || DbConflicts.IsConflict(e));
            r.Exponential(100, TimeSpan.FromMilliseconds(5), TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(10));
        });
        endpoint.UseInMemoryOutbox(context);
        endpoint.UseConsumeFilter(typeof(SenderFilter<>), context);

        // Quorum queues cannot be exclusive or auto-delete: temporary endpoints stay classic and die with their host.
        if (context.GetService<IOptions<RabbitMqOptions>>()?.Value.QueueType == RabbitMqQueueType.Quorum
            && endpoint is IRabbitMqReceiveEndpointConfigurator rabbit
            && endpoint is IRabbitMqReceiveEndpointConfiguration { Settings: { Durable: true, AutoDelete: false,
                Exclusive: false, QueueExpiration: null } })
        {
            rabbit.SetQuorumQueue();
        }
    }

    /// <summary>
    /// Stamps every message this bus sends or publishes with the AMQP <c>user_id</c> of its connection's user; RabbitMQ
    /// refuses any other value, so a receiver knows who sent it.
    /// </summary>
    public static void SendAsUser(this IRabbitMqBusFactoryConfigurator cfg, string username)
    {
        cfg.ConfigureSend(s => s.UseSendExecute(c => SetUserId(c, username)));
        cfg.ConfigurePublish(p => p.UseExecute(c => SetUserId(c, username)));
    }

    static void SetUserId(SendContext context, string username)
    {
        if (context.TryGetPayload(out RabbitMqSendContext? rabbit))
        {
            rabbit.BasicProperties.UserId = username;
        }
    }

    /// <summary>
    /// Bad input does not get better by trying again (MassTransit wraps a saga activity's exception, so look inside).
    /// </summary>
    static bool IsBadInput(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is ArgumentException)
            {
                return true;
            }
        }

        return false;
    }
}
