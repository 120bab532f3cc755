using MassTransit;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Infrastructure.Scheduling;

/// <summary>The endpoint both scheduler consumers share, as <see cref="QuartzEndpointOptions"/> say.</summary>
public sealed class QuartzEndpointDefinition(IOptions<QuartzEndpointOptions> options) :
    IEndpointDefinition<ScheduleMessageConsumer>,
    IEndpointDefinition<CancelScheduledMessageConsumer>
{
    public QuartzEndpointOptions Options { get; } = options.Value;

    public bool ConfigureConsumeTopology => true;

    public bool IsTemporary => false;

    public int? PrefetchCount => Options.PrefetchCount;

    public int? ConcurrentMessageLimit => Options.ConcurrentMessageLimit;

    public string GetEndpointName(IEndpointNameFormatter formatter) => Options.QueueName;

    public void Configure<T>(T configurator, IRegistrationContext? context)
        where T : IReceiveEndpointConfigurator
    {
    }
}

/// <summary>Held schedules wait for their cancel beside those being stored: the consumer has room for both.</summary>
public sealed class ScheduleMessageConsumerDefinition : ConsumerDefinition<ScheduleMessageConsumer>
{
    public ScheduleMessageConsumerDefinition(QuartzEndpointDefinition endpointDefinition)
    {
        EndpointDefinition = endpointDefinition;
        var options = endpointDefinition.Options;
        ConcurrentMessageLimit = options.MaxHeld + options.ConcurrentStoreLimit;
    }
}

/// <summary>
/// Cancels arrive as batches; with batching off each batch holds one cancel, and as many run at once as the endpoint
/// allows.
/// </summary>
public sealed class CancelScheduledMessageConsumerDefinition : ConsumerDefinition<CancelScheduledMessageConsumer>
{
    readonly QuartzEndpointOptions _options;

    public CancelScheduledMessageConsumerDefinition(QuartzEndpointDefinition endpointDefinition)
    {
        EndpointDefinition = endpointDefinition;
        _options = endpointDefinition.Options;
    }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<CancelScheduledMessageConsumer> consumerConfigurator, IRegistrationContext context)
    {
        consumerConfigurator.Options<BatchOptions>(b =>
        {
            if (_options.CancelBatchMessageLimit is { } messageLimit)
            {
                b.SetMessageLimit(messageLimit)
                    .SetTimeLimit(_options.CancelBatchTimeLimit)
                    .SetConcurrencyLimit(_options.CancelBatchConcurrencyLimit);
            }
            else
            {
                b.SetMessageLimit(1)
                    .SetConcurrencyLimit(_options.ConcurrentMessageLimit ?? _options.PrefetchCount ?? 1);
            }
        });
    }
}
