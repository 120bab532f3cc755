using MassTransit;

namespace DynamicWorkers.Client;

/// <summary>A client-only MassTransit bus on RabbitMQ from one AMQP URI: no consumers, just a response queue.</summary>
static class RabbitMqBus
{
    public sealed record Settings(string Host, int Port, string VirtualHost, string Username, string Password,
        bool Tls);

    /// <summary>
    /// <c>amqp[s]://[user[:password]@]host[:port][/vhost]</c>; user and password default to guest, the vhost to
    /// <c>/</c>.
    /// </summary>
    public static Settings Parse(Uri uri)
    {
        if (!uri.IsAbsoluteUri || uri.Scheme is not ("amqp" or "amqps") || string.IsNullOrEmpty(uri.Host))
        {
            throw new ArgumentException($"'{uri}' is not an AMQP URI like amqp://user:password@host:5672/vhost",
                nameof(uri));
        }

        var tls = uri.Scheme == "amqps";
        var user = uri.UserInfo.Split(':', 2);
        var path = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        return new Settings(
            uri.Host,
            uri.IsDefaultPort || uri.Port < 0 ? (tls ? 5671 : 5672) : uri.Port,
            path.Length == 0 ? "/" : path,
            user[0].Length > 0 ? Uri.UnescapeDataString(user[0]) : "guest",
            user.Length > 1 ? Uri.UnescapeDataString(user[1]) : "guest",
            tls);
    }

    public static IBusControl Create(Uri uri)
    {
        var settings = Parse(uri);
        return Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(settings.Host, (ushort)settings.Port, settings.VirtualHost, h =>
            {
                h.Username(settings.Username);
                h.Password(settings.Password);
                if (settings.Tls)
                {
                    h.UseSsl(s => s.ServerName = settings.Host);
                }
            });
            cfg.UseDynamicWorkersIdentity(settings.Username);
        });
    }

    /// <summary>
    /// Starts the bus and waits until it is connected; a broker that does not let us in is reported as unreachable.
    /// </summary>
    public static async Task StartAsync(IBusControl bus, Uri uri, CancellationToken cancellationToken)
    {
        var where = Redacted(uri);
        var settings = Parse(uri);
        try
        {
            // A refused port or an unknown host fails here at once; the bus itself would retry until the deadline.
            using (var probe = new System.Net.Sockets.TcpClient())
            {
                await probe.ConnectAsync(settings.Host, settings.Port, cancellationToken);
            }

            var handle = await bus.StartAsync(cancellationToken);
            await handle.Ready.WaitAsync(cancellationToken);
        }
        catch (Exception e) when (e is not DynamicWorkersUnreachableException)
        {
            await StopQuietlyAsync(bus);
            var reason = e is OperationCanceledException
                ? "no connection before the deadline"
                : e.GetBaseException().Message;
            throw new DynamicWorkersUnreachableException($"RabbitMQ at {where} is unreachable: {reason}", e);
        }
    }

    /// <summary>The URI without its password, for messages.</summary>
    public static string Redacted(Uri uri)
    {
        var settings = Parse(uri);
        return $"{uri.Scheme}://{settings.Username}@{settings.Host}:{settings.Port}/"
            + $"{Uri.EscapeDataString(settings.VirtualHost)}";
    }

    static async Task StopQuietlyAsync(IBusControl bus)
    {
        try
        {
            await bus.StopAsync(TimeSpan.FromSeconds(2));
        }
        catch (Exception)
        {
            // Already failing: the original error is the one to report.
        }
    }
}
