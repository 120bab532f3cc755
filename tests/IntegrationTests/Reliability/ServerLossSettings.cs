namespace DynamicWorkers.IntegrationTests.Reliability;

/// <summary>
/// The services' settings of a run that kills its own servers (<see cref="ChaosTests"/>,
/// <see cref="BrokerNodeLossTests"/>): short timeouts and a frequent sweep, so that a lost message or timer is
/// recovered, or shows, within the run.
/// </summary>
static class ServerLossSettings
{
    public const string Pool = "ubuntu-22.04";

    public static Dictionary<string, string?> For(string rabbitMqPort, string connectionString) => new()
    {
        ["Transport"] = "RabbitMq",
        ["RabbitMq:Host"] = "127.0.0.1",
        ["RabbitMq:Port"] = rabbitMqPort,
        ["RabbitMq:VirtualHost"] = "/",
        ["RabbitMq:Username"] = "dw",
        ["RabbitMq:Password"] = "dw",
        ["Database:Provider"] = "Postgres",
        ["ConnectionStrings:Default"] = connectionString,
        [$"Pools:{Pool}:HotTarget"] = "4",
        [$"Pools:{Pool}:MaxWorkers"] = "30",
        [$"Pools:{Pool}:AllocationTimeout"] = "00:01:00",
        ["Pools:windows-2022:HotTarget"] = "0",
        ["Lifecycle:MaxWorkerAge"] = "00:10:00",
        ["Lifecycle:ProvisioningTimeout"] = "00:00:30",
        ["Lifecycle:TrustTimeout"] = "00:00:15",
        // A delete lost with a killed server is asked for again by the sweep within the drain's deadline.
        ["Lifecycle:DeprovisioningTimeout"] = "00:00:15",
        ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
        // The sweep is the design's net for a timer whose schedule was lost with the connection (the in-memory outbox
        // sends after the saga's commit).
        ["Reaper:SweepInterval"] = "00:00:05",
        ["Reaper:OverdueGrace"] = "00:00:10",
        ["Reaper:OrphanGrace"] = "00:00:30",
        ["Cloud:Simulated:DeleteDelay"] = "00:00:00.100",
        ["Logging:Console:TimestampFormat"] = "HH:mm:ss.fff ",
    };
}
