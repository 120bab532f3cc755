using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using DynamicWorkers.IntegrationTests.Support;
using RabbitMQ.Client;

namespace DynamicWorkers.IntegrationTests.Cli;

/// <summary>
/// The example envelope of docs/wire-format.md, published byte for byte with a plain AMQP client (no MassTransit on
/// this side), as an instance in another language would, gets its <c>LeaseGranted</c> in the queue it named.
/// </summary>
[Collection(RunningSystemCollection.Name)]
public sealed class InstanceWireFormatTests(DwSystem system)
{
    [Fact]
    public async Task The_documented_envelope_published_raw_gets_a_grant_in_its_reply_queue()
    {
        var reference =
            await File.ReadAllTextAsync(Path.Combine(ServiceProcess.RepositoryRoot, "docs", "wire-format.md"));
        var envelope = Regex.Match(reference, "<!-- wire-example -->\\s*```json\\n(.*?)\\n```", RegexOptions.Singleline)
            .Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(envelope), "the wire example of docs/wire-format.md was not found");
        using var example = JsonDocument.Parse(envelope);
        var leaseId = example.RootElement.GetProperty("message").GetProperty("leaseId").GetString();
        var requestId = example.RootElement.GetProperty("requestId").GetString();
        var replyQueue = example.RootElement.GetProperty("responseAddress").GetString()!["queue:".Length..];

        var factory = new ConnectionFactory
        {
            HostName = TestServers.RabbitMqHost,
            UserName = TestServers.RabbitMqUser,
            Password = TestServers.RabbitMqPassword,
            VirtualHost = system.Broker.Name,
        };
        await using var connection = await factory.CreateConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        await channel.QueueDeclareAsync(replyQueue, durable: true, exclusive: false, autoDelete: false);
        await channel.BasicPublishAsync(
            "DynamicWorkers.Contracts:LeaseRequested",
            "",
            mandatory: false,
            new BasicProperties { ContentType = "application/vnd.masstransit+json",
                DeliveryMode = DeliveryModes.Persistent, UserId = TestServers.RabbitMqUser },
            Encoding.UTF8.GetBytes(envelope));

        JsonElement? answer = null;
        await Eventually.True(
            async () =>
            {
                var delivery = await channel.BasicGetAsync(replyQueue, autoAck: true);
                if (delivery is not null)
                {
                    answer = JsonDocument.Parse(delivery.Body).RootElement.Clone();
                }

                return answer is not null;
            },
            TimeSpan.FromSeconds(20),
            $"an answer in {replyQueue}",
            system.Diagnostics);

        var types = answer!.Value.GetProperty("messageType").EnumerateArray().Select(t => t.GetString()).ToList();
        Assert.True(types.Contains("urn:message:DynamicWorkers.Contracts:LeaseGranted"), answer.Value.ToString());
        Assert.Equal(requestId, answer.Value.GetProperty("requestId").GetString());
        var granted = answer.Value.GetProperty("message");
        Assert.Equal((leaseId, "instance-42"),
            (granted.GetProperty("leaseId").GetString(), granted.GetProperty("instanceId").GetString()));
        Assert.False(string.IsNullOrEmpty(granted.GetProperty("workerAddress").GetString()));

        // The release, in the words of docs/wire-format.md: the same envelope, LeaseReleased's URN, exchange and
        // fields.
        var release = JsonSerializer.Serialize(new
        {
            messageId = Guid.NewGuid(),
            messageType = new[] { "urn:message:DynamicWorkers.Contracts:LeaseReleased" },
            message = new { leaseId, instanceId = "instance-42" },
        });
        await channel.BasicPublishAsync(
            "DynamicWorkers.Contracts:LeaseReleased",
            "",
            mandatory: false,
            new BasicProperties { ContentType = "application/vnd.masstransit+json",
                DeliveryMode = DeliveryModes.Persistent, UserId = TestServers.RabbitMqUser },
            Encoding.UTF8.GetBytes(release));
        await Eventually.True(
            async () => await system.Database.ScalarAsync($"SELECT count(*) FROM leases WHERE \"CorrelationId\" = "
                + $"'{leaseId}' AND \"CurrentState\" = 'Released'") == 1,
            TimeSpan.FromSeconds(20),
            "the raw release to end the lease",
            system.Diagnostics);
    }
}
