using System.Diagnostics;
using DynamicWorkers.Infrastructure.Messaging;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace DynamicWorkers.Bench;

/// <summary>A ~600-byte message, the size of a lease request with its headers.</summary>
public sealed record BenchPayload(int Sequence, string Padding);

public sealed class PayloadCounter
{
    int _count;
    long _lastAt;

    public int Count => Volatile.Read(ref _count);
    public long LastAt => Interlocked.Read(ref _lastAt);

    public void Seen()
    {
        Interlocked.Increment(ref _count);
        Interlocked.Exchange(ref _lastAt, Stopwatch.GetTimestamp());
    }
}

public sealed class PayloadConsumer(PayloadCounter counter) : IConsumer<BenchPayload>
{
    public Task Consume(ConsumeContext<BenchPayload> context)
    {
        counter.Seen();
        return Task.CompletedTask;
    }
}

/// <summary>Messages published and consumed in one raw run, and the rate.</summary>
public sealed record RawRun(int Messages, double PerSecond);

/// <summary>The broker's own limit on this machine, and MassTransit's on top of it: publish and consume at once, as
/// fast as they go.</summary>
public static class RawBroker
{
    const int BodyBytes = 600;

    /// <summary>RabbitMQ.Client: persistent messages, publisher confirms (256 in flight), one durable queue, manual
    /// acks.</summary>
    public static async Task<RawRun> RabbitMqClientAsync(BenchVirtualHost vhost, TimeSpan duration)
    {
        var factory = new ConnectionFactory
        {
            HostName = BenchServers.RabbitMqHost,
            VirtualHost = vhost.Name,
            UserName = BenchServers.RabbitMqUser,
            Password = BenchServers.RabbitMqPassword,
        };
        const string queue = "bench-raw";
        await using var publisherConnection = await factory.CreateConnectionAsync();
        await using var consumerConnection = await factory.CreateConnectionAsync();
        await using var publisher = await publisherConnection.CreateChannelAsync(new CreateChannelOptions(
            publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        await using var consumer = await consumerConnection.CreateChannelAsync();
        await publisher.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
        await consumer.BasicQosAsync(0, 256, false);

        var counter = new PayloadCounter();
        var receiver = new AsyncEventingBasicConsumer(consumer);
        receiver.ReceivedAsync += async (_, delivery) =>
        {
            await consumer.BasicAckAsync(delivery.DeliveryTag, multiple: false);
            counter.Seen();
        };
        await consumer.BasicConsumeAsync(queue, autoAck: false, receiver);

        var body = new byte[BodyBytes];
        Random.Shared.NextBytes(body);
        var properties = new BasicProperties { Persistent = true, ContentType = "application/octet-stream" };
        var started = Stopwatch.GetTimestamp();
        var published = 0;
        var inFlight = new List<ValueTask>(256);
        while (Stopwatch.GetElapsedTime(started) < duration)
        {
            for (var i = 0; i < 256; i++)
            {
                inFlight.Add(publisher.BasicPublishAsync("", queue, mandatory: false, properties, body));
            }

            foreach (var confirm in inFlight)
            {
                await confirm;
            }

            published += inFlight.Count;
            inFlight.Clear();
        }

        await WaitForAsync(() => counter.Count >= published, TimeSpan.FromSeconds(60),
            "the raw consumer to drain the queue");
        return new RawRun(published, published / Stopwatch.GetElapsedTime(started, counter.LastAt).TotalSeconds);
    }

    /// <summary>MassTransit with the services' own bus setup (retry, outbox, prefetch): publish from 64 loops, one
    /// consumer endpoint.</summary>
    public static async Task<RawRun> MassTransitAsync(BenchVirtualHost vhost, TimeSpan duration)
    {
        var counter = new PayloadCounter();
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(vhost.Settings);
        builder.Services.AddSingleton(counter);
        builder.Services.AddDynamicWorkersBus(builder.Configuration, bus => bus.AddConsumer<PayloadConsumer>());
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var bus = host.Services.GetRequiredService<IBus>();
            // 600 bytes on the wire with MassTransit's envelope around it.
            var padding = new string('x', 150);
            var started = Stopwatch.GetTimestamp();
            var published = 0;
            await Task.WhenAll(Enumerable.Range(0, 64).Select(async _ =>
            {
                while (Stopwatch.GetElapsedTime(started) < duration)
                {
                    await bus.Publish(new BenchPayload(Interlocked.Increment(ref published), padding));
                }
            }));

            await WaitForAsync(() => counter.Count >= published, TimeSpan.FromSeconds(60),
                "the MassTransit consumer to drain the queue");
            return new RawRun(published, published / Stopwatch.GetElapsedTime(started, counter.LastAt).TotalSeconds);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    public static async Task WaitForAsync(Func<bool> condition, TimeSpan deadline, string what,
        int pollMilliseconds = 20)
    {
        var until = Stopwatch.GetTimestamp() + (long)(deadline.TotalSeconds * Stopwatch.Frequency);
        while (!condition())
        {
            if (Stopwatch.GetTimestamp() > until)
            {
                throw new TimeoutException($"gave up waiting for {what} after {deadline.TotalSeconds:0} s");
            }

            await Task.Delay(pollMilliseconds);
        }
    }
}
