using DynamicWorkers.Cloud.Simulated;
using DynamicWorkers.Infrastructure.Configuration;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>A lease as the service stored it: the times are the saga's own, not a client's.</summary>
public sealed record LeaseRow(Guid LeaseId, string InstanceId, string State, Guid? WorkerId, DateTimeOffset? GrantedAt,
    DateTimeOffset? EndedAt, bool HoldsTimer);

/// <summary>What the service side held at the end of a run: its lease rows, the workers left, the consumers on its
/// queues.</summary>
public sealed record ServiceRecord(IReadOnlyList<LeaseRow> Leases, IReadOnlyList<string> WorkersLeft,
    IReadOnlyDictionary<string, uint> ConsumersByQueue)
{
    public static readonly ServiceRecord Empty = new([], [], new Dictionary<string, uint>());
}

/// <summary>A trust command that reached the cloud, for one instance, and whether the cloud took it.</summary>
public sealed record TrustAttempt(string InstanceId, bool Accepted);

/// <summary>A VM as the cloud recorded it: whether it is deleted, and every trust command it received.</summary>
public sealed record CloudRecord(Guid WorkerId, bool Deleted, IReadOnlyList<TrustAttempt> Trusts)
{
    public IReadOnlyList<string> TrustedInstances
        => Trusts.Where(t => t.Accepted).Select(t => t.InstanceId).Distinct().ToList();
}

/// <summary>The readers the runs and the planted-fault tests share.</summary>
public static class ServiceRecords
{
    /// <summary>The service's lease and worker rows in the database.</summary>
    public static async Task<ServiceRecord> ReadAsync(string connectionString,
        IReadOnlyDictionary<string, uint>? consumersByQueue = null)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        var leases = new List<LeaseRow>();
        await using (var command = new NpgsqlCommand(
            "SELECT \"CorrelationId\", \"InstanceId\", \"CurrentState\", \"WorkerId\", \"GrantedAt\", \"EndedAt\", "
                + "\"AllocationTimeoutToken\" IS NOT NULL FROM leases", connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                leases.Add(new LeaseRow(
                    reader.GetGuid(0),
                    reader.GetString(1),
                    reader.GetString(2),
                    reader.IsDBNull(3) ? null : reader.GetGuid(3),
                    reader.IsDBNull(4) ? null : reader.GetFieldValue<DateTimeOffset>(4),
                    reader.IsDBNull(5) ? null : reader.GetFieldValue<DateTimeOffset>(5),
                    reader.GetBoolean(6)));
            }
        }

        var workers = new List<string>();
        await using (var command =
            new NpgsqlCommand("SELECT \"CorrelationId\"::text || ' ' || \"CurrentState\" FROM workers", connection))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                workers.Add(reader.GetString(0));
            }
        }

        return new ServiceRecord(leases, workers, consumersByQueue ?? new Dictionary<string, uint>());
    }

    /// <summary>Every VM the simulated cloud created, whether it is deleted, and every trust command it
    /// received.</summary>
    public static async Task<IReadOnlyList<CloudRecord>> ReadSimulatedCloudAsync(string connectionString)
    {
        await using var db = new SimulatedCloudDbContext(SimulatedCloudDbContext.CreateOptions(
            new DatabaseOptions { Provider = DatabaseProvider.Postgres, ConnectionString = connectionString }));
        var vms = await db.Vms.AsNoTracking().ToListAsync();
        var trusts = await db.Trusts.AsNoTracking().OrderBy(t => t.Id).ToListAsync();
        return vms.Select(v => new CloudRecord(
            v.WorkerId,
            v.DeletedAt is not null,
            trusts.Where(t => t.WorkerId == v.WorkerId)
                .Select(t => new TrustAttempt(t.InstanceId, t.Outcome == SimulatedVmTrust.Trusted)).ToList())).ToList();
    }
}
