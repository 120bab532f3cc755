using System.Security.Cryptography;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Cloud.Simulated;

/// <summary>
/// The local cloud of the tests and of Standalone. Its VMs are rows in the shared database, so the
/// Provisioner, Trust and Reaper processes act on the same cloud. Every state change is a conditional
/// update, so concurrent or redelivered calls for one worker agree on a single outcome.
/// </summary>
public sealed class SimulatedCloud(DbContextOptions<SimulatedCloudDbContext> dbOptions,
    IOptions<SimulatedCloudOptions> options) : IWorkerCloud
{
    public const string ProvisioningFailure = "SimulatedProvisioningFailure";
    public const string TrustFailure = "SimulatedTrustFailure";
    public const string AlreadyTrustsAnotherInstance = "AlreadyTrustsAnotherInstance";
    public const string VmNotFound = "VmNotFound";
    public const string VmNotReady = "VmNotReady";
    public const string VmDeleted = "VmDeleted";

    const string VmTable = "simulated_vms";
    const string TrustTable = "simulated_vm_trusts";
    const string SqlServerProvider = "Microsoft.EntityFrameworkCore.SqlServer";
    const string PostgresProvider = "Npgsql.EntityFrameworkCore.PostgreSQL";

    readonly SemaphoreSlim _schemaLock = new(1, 1);
    volatile bool _schemaReady;

    SimulatedCloudOptions Options => options.Value;

    public async Task<CloudVm> CreateAsync(Guid workerId, VmSpec spec, CancellationToken cancellationToken)
    {
        await EnsureSchemaAsync(cancellationToken);
        var vm = await FindAsync(workerId, cancellationToken) ?? await InsertAsync(workerId, spec, cancellationToken);

        // A redelivery waits out only what is left of the original delay.
        var remaining = vm.CreatedAt + Options.ProvisionDelay - DateTimeOffset.UtcNow;
        if (vm.ReadyAt is null && vm.DeletedAt is null && remaining > TimeSpan.Zero)
        {
            await Task.Delay(remaining, cancellationToken);
        }

        if (vm.ReadyAt is null && vm.DeletedAt is null)
        {
            // Whoever updates first decides; a concurrent caller then reads that outcome.
            var now = DateTimeOffset.UtcNow;
            await using var db = NewContext();
            var pending = db.Vms.Where(v => v.WorkerId == workerId && v.ReadyAt == null && v.DeletedAt == null);
            if (Random.Shared.NextDouble() < Options.ProvisionFailureRate)
            {
                await pending.ExecuteUpdateAsync(s => s.SetProperty(v => v.DeletedAt, now), cancellationToken);
            }
            else
            {
                await pending.ExecuteUpdateAsync(s => s.SetProperty(v => v.ReadyAt, now), cancellationToken);
            }

            vm = await FindAsync(workerId, cancellationToken)
                ?? throw new InvalidOperationException($"simulated VM {workerId} vanished");
        }

        if (vm.DeletedAt is not null)
        {
            throw new WorkerCloudException(vm.ReadyAt is null ? ProvisioningFailure : VmDeleted);
        }

        return ToCloudVm(vm);
    }

    public async Task<string> TrustAsync(Guid workerId, string instanceId, string thumbprint,
        CancellationToken cancellationToken)
    {
        await EnsureSchemaAsync(cancellationToken);

        // Logged before it is judged: a command for a second instance is a service bug even when refused here.
        var attempt = new SimulatedVmTrust { WorkerId = workerId, InstanceId = instanceId, Thumbprint = thumbprint,
            At = DateTimeOffset.UtcNow };
        await using (var db = NewContext())
        {
            db.Trusts.Add(attempt);
            await db.SaveChangesAsync(cancellationToken);
        }

        try
        {
            var agentThumbprint = await JudgeTrustAsync(workerId, instanceId, thumbprint, cancellationToken);
            await RecordOutcomeAsync(attempt.Id, SimulatedVmTrust.Trusted, cancellationToken);
            return agentThumbprint;
        }
        catch (WorkerCloudException e)
        {
            await RecordOutcomeAsync(attempt.Id, e.Reason, cancellationToken);
            throw;
        }
    }

    async Task RecordOutcomeAsync(long attemptId, string outcome, CancellationToken cancellationToken)
    {
        await using var db = NewContext();
        await db.Trusts.Where(t => t.Id == attemptId).ExecuteUpdateAsync(s => s.SetProperty(t => t.Outcome, outcome),
            cancellationToken);
    }

    async Task<string> JudgeTrustAsync(Guid workerId, string instanceId, string thumbprint,
        CancellationToken cancellationToken)
    {
        var vm = await FindAsync(workerId, cancellationToken);
        if (vm is null || vm.DeletedAt is not null)
        {
            throw new WorkerCloudException(VmNotFound);
        }

        if (vm.ReadyAt is null)
        {
            throw new WorkerCloudException(VmNotReady);
        }

        if (vm.TrustedInstanceId is not null)
        {
            return SameTrust(vm, instanceId, thumbprint) ? vm.AgentThumbprint
                : throw new WorkerCloudException(AlreadyTrustsAnotherInstance);
        }

        await Task.Delay(Options.TrustDelay, cancellationToken);
        if (Random.Shared.NextDouble() < Options.TrustFailureRate)
        {
            throw new WorkerCloudException(TrustFailure);
        }

        await using (var db = NewContext())
        {
            // Only an untrusting VM takes a trust: of two racing instances exactly one wins.
            var won = await db.Vms
                .Where(v => v.WorkerId == workerId && v.TrustedInstanceId == null && v.DeletedAt == null)
                .ExecuteUpdateAsync(
                    s => s.SetProperty(v => v.TrustedInstanceId, instanceId)
                        .SetProperty(v => v.TrustedThumbprint, thumbprint),
                    cancellationToken);
            if (won == 1)
            {
                return vm.AgentThumbprint;
            }
        }

        vm = await FindAsync(workerId, cancellationToken);
        if (vm is null || vm.DeletedAt is not null)
        {
            throw new WorkerCloudException(VmNotFound);
        }

        return SameTrust(vm, instanceId, thumbprint) ? vm.AgentThumbprint
            : throw new WorkerCloudException(AlreadyTrustsAnotherInstance);
    }

    public async Task DeleteAsync(Guid workerId, CancellationToken cancellationToken)
    {
        await EnsureSchemaAsync(cancellationToken);
        var vm = await FindAsync(workerId, cancellationToken);
        if (vm is null || vm.DeletedAt is not null)
        {
            return;
        }

        await Task.Delay(Options.DeleteDelay, cancellationToken);
        var now = DateTimeOffset.UtcNow;
        await using var db = NewContext();
        await db.Vms
            .Where(v => v.WorkerId == workerId && v.DeletedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(v => v.DeletedAt, now), cancellationToken);
    }

    public async Task<IReadOnlyList<CloudVm>> ListAsync(CancellationToken cancellationToken)
    {
        await EnsureSchemaAsync(cancellationToken);
        await using var db = NewContext();
        var vms = await db.Vms.AsNoTracking().Where(v => v.DeletedAt == null).ToListAsync(cancellationToken);
        return vms.Select(ToCloudVm).ToList();
    }

    /// <summary>Running only while the VM exists, finished starting and was not marked dead.</summary>
    public async Task<VmHealth> CheckAsync(Guid workerId, CancellationToken cancellationToken)
    {
        await EnsureSchemaAsync(cancellationToken);
        var vm = await FindAsync(workerId, cancellationToken);
        return vm is { ReadyAt: not null, DeletedAt: null, DeadAt: null } ? VmHealth.Running : VmHealth.NotRunning;
    }

    /// <summary>
    /// The VM stops running but stays (as a crashed or deallocated VM does) until it is deleted; false if there is
    /// none.
    /// </summary>
    public async Task<bool> MarkDeadAsync(Guid workerId, CancellationToken cancellationToken)
    {
        await EnsureSchemaAsync(cancellationToken);
        var now = DateTimeOffset.UtcNow;
        await using var db = NewContext();
        return await db.Vms
            .Where(v => v.WorkerId == workerId && v.DeletedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(v => v.DeadAt, v => v.DeadAt ?? now), cancellationToken) == 1;
    }

    /// <summary>
    /// Creates the two tables when missing. Not <c>EnsureCreated</c>: that does nothing once the database
    /// holds any table (the product's, Quartz's). Several processes may start at once on an empty
    /// database: the loser of the race fails to create and then finds the winner's tables.
    /// </summary>
    public async Task EnsureSchemaAsync(CancellationToken cancellationToken)
    {
        if (_schemaReady)
        {
            return;
        }

        await _schemaLock.WaitAsync(cancellationToken);
        try
        {
            if (_schemaReady)
            {
                return;
            }

            await using var db = NewContext();
            if (!await TableExistsAsync(db, cancellationToken))
            {
                try
                {
                    await db.GetService<IRelationalDatabaseCreator>().CreateTablesAsync(cancellationToken);
                }
                catch (Exception) when (!cancellationToken.IsCancellationRequested)
                {
                    // Another process may have created them at the same moment; if not, the failure is real.
                    if (!await TableExistsAsync(db, cancellationToken))
                    {
                        throw;
                    }
                }
            }

            await AddColumnIfMissingAsync(db, TrustTable, nameof(SimulatedVmTrust.Outcome), _ => "varchar(100)",
                cancellationToken);
            await AddColumnIfMissingAsync(db, VmTable, nameof(SimulatedVm.DeadAt), TimestampType, cancellationToken);
            _schemaReady = true;
        }
        finally
        {
            _schemaLock.Release();
        }
    }

    /// <summary>
    /// A column a database made by an older version lacks (Standalone keeps its SQLite file): the trust log's outcome,
    /// the VM's dead mark. Both are nullable, so rows already there need no value.
    /// </summary>
    static async Task AddColumnIfMissingAsync(SimulatedCloudDbContext db, string table, string column,
        Func<string, string> typeOf, CancellationToken cancellationToken)
    {
        var probe = $"SELECT COUNT(*) AS \"Value\" FROM {table} WHERE \"{column}\" IS NULL AND 1 = 0";
        try
        {
            await db.Database.SqlQueryRaw<int>(probe).SingleAsync(cancellationToken);
            return;
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            // The column is missing; any other failure shows again on the ALTER below.
        }

        var provider = db.Database.ProviderName ?? "";
        // Names and types are the constants above, never input.
        var alter = $"ALTER TABLE {table} {(provider == SqlServerProvider ? "ADD" : "ADD COLUMN")} "
            + $"\"{column}\" {typeOf(provider)} NULL";
        try
        {
            await db.Database.ExecuteSqlRawAsync(alter, cancellationToken);
        }
        catch (Exception) when (!cancellationToken.IsCancellationRequested)
        {
            // Another process may have added it at the same moment; if not, the failure is real.
            await db.Database.SqlQueryRaw<int>(probe).SingleAsync(cancellationToken);
        }
    }

    static string TimestampType(string provider) => provider switch
    {
        SqlServerProvider => "datetimeoffset",
        PostgresProvider => "timestamp with time zone",
        _ => "TEXT",
    };

    static async Task<bool> TableExistsAsync(SimulatedCloudDbContext db, CancellationToken cancellationToken)
    {
        var sql = db.Database.ProviderName switch
        {
            "Microsoft.EntityFrameworkCore.Sqlite"
                => $"SELECT COUNT(*) AS \"Value\" FROM sqlite_master WHERE type = 'table' AND name = '{VmTable}'",
            PostgresProvider
                => "SELECT COUNT(*)::int AS \"Value\" FROM information_schema.tables "
                    + $"WHERE table_schema = current_schema() AND table_name = '{VmTable}'",
            _ => "SELECT COUNT(*) AS [Value] FROM INFORMATION_SCHEMA.TABLES "
                + $"WHERE TABLE_SCHEMA = SCHEMA_NAME() AND TABLE_NAME = '{VmTable}'",
        };
        return await db.Database.SqlQueryRaw<int>(sql).SingleAsync(cancellationToken) > 0;
    }

    async Task<SimulatedVm> InsertAsync(Guid workerId, VmSpec spec, CancellationToken cancellationToken)
    {
        var vm = new SimulatedVm
        {
            WorkerId = workerId,
            Pool = spec.Pool,
            Image = spec.Image,
            Size = spec.Size,
            Address = $"10.77.{RandomNumberGenerator.GetInt32(0, 256)}.{RandomNumberGenerator.GetInt32(1, 255)}:10933",
            AgentThumbprint = Convert.ToHexString(RandomNumberGenerator.GetBytes(20)),
            CreatedAt = DateTimeOffset.UtcNow,
        };
        try
        {
            await using var db = NewContext();
            db.Vms.Add(vm);
            await db.SaveChangesAsync(cancellationToken);
            return vm;
        }
        catch (DbUpdateException)
        {
            // A concurrent create of the same worker inserted first: there is one VM, theirs.
            var existing = await FindAsync(workerId, cancellationToken);
            if (existing is null)
            {
                throw;
            }

            return existing;
        }
    }

    async Task<SimulatedVm?> FindAsync(Guid workerId, CancellationToken cancellationToken)
    {
        await using var db = NewContext();
        return await db.Vms.AsNoTracking().SingleOrDefaultAsync(v => v.WorkerId == workerId, cancellationToken);
    }

    SimulatedCloudDbContext NewContext() => new(dbOptions);

    static bool SameTrust(SimulatedVm vm, string instanceId, string thumbprint)
        => vm.TrustedInstanceId == instanceId && string.Equals(vm.TrustedThumbprint, thumbprint,
            StringComparison.OrdinalIgnoreCase);

    static CloudVm ToCloudVm(SimulatedVm vm)
        => new(vm.WorkerId, vm.Pool, vm.Address, vm.AgentThumbprint, vm.CreatedAt, vm.ReadyAt is null,
            vm.TrustedInstanceId);
}
