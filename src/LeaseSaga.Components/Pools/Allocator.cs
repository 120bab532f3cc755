using System.Data.Common;
using System.Security.Cryptography;
using System.Text;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Scheduling;
using DynamicWorkers.Infrastructure.Telemetry;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Instances;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Workers;
using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Pools;

/// <summary>
/// Allocation as atomic claims on rows, inside the transaction that saves the saga handling the message (the EF saga
/// repository commits it): a lease takes an idle worker of its instance or a ready one by locking its row (skipping
/// rows another copy holds), a worker that becomes ready takes the oldest waiting lease the same way. Nothing is
/// decided on a copy of the pool, so any number of LeaseSaga copies decide at once and a decision reads only the rows
/// it takes. The pool's own row is a lock: leases that take a hot worker or join the line hold it shared, side by side;
/// a worker turning ready, and every decision that starts or retires workers (the pool keeper's), hold it alone, which
/// keeps <c>MaxWorkers</c> across copies and lets no lease wait while a worker sits ready.
/// </summary>
public sealed class Allocator(
    DynamicWorkersDbContext db,
    InstanceLifecycles lifecycles,
    IOptionsMonitor<PoolsOptions> pools,
    IOptionsMonitor<LifecycleOptions> lifecycle,
    TimeProvider clock,
    ILogger<Allocator> logger)
{
    const int FailuresBeforeBackoff = 3;

    readonly HashSet<Guid> _claimed = [];
    static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(30);
    static readonly TimeSpan LongestBackoff = TimeSpan.FromMinutes(30);

    /// <summary>30 s at the third failure in a row, doubling, at most 30 minutes.</summary>
    public static TimeSpan BackoffDelay(int consecutiveFailures)
    {
        var doublings = Math.Min(consecutiveFailures - FailuresBeforeBackoff, 10);
        var delay = FirstBackoff * Math.Pow(2, Math.Max(0, doublings));
        return delay < LongestBackoff ? delay : LongestBackoff;
    }

    /// <summary>Claims hold their locks until the saga is saved: the repository commits this transaction.</summary>
    public async Task BeginAsync(CancellationToken cancellationToken)
    {
        if (db.Database.CurrentTransaction is null)
        {
            db.Database.AutoSavepointsEnabled = false;
            await db.Database.BeginTransactionAsync(cancellationToken);
        }
    }

    /// <summary>For a consumer that is no saga: saves what it changed and commits.</summary>
    public async Task CommitAsync(CancellationToken cancellationToken)
    {
        await db.SaveChangesAsync(cancellationToken);
        if (db.Database.CurrentTransaction is { } transaction)
        {
            await transaction.CommitAsync(cancellationToken);
        }
    }

    /// <summary>Why a removed pool's waiting leases are rejected and its free workers deleted.</summary>
    public static string RemovedPoolDetail(string pool)
        => $"pool '{pool}' was removed from configuration (Pools:{pool})";

    /// <summary>
    /// A pool with a row but no longer in configuration drains: no new worker starts, its line is rejected and its
    /// workers are deleted as soon as they are free. Its row stays, so a pool that comes back keeps its size.
    /// </summary>
    public bool IsDraining(string pool) => !pools.CurrentValue.Pools.ContainsKey(pool);

    public PoolOptions Definition(string pool)
        => pools.CurrentValue.Pools.TryGetValue(pool, out var definition)
            ? definition
            : throw new ArgumentException($"pool '{pool}' is not configured (Pools:{pool})");

    /// <summary>
    /// Locks the pool's row, creating it from configuration the first time. <paramref name="shared"/>: leases that take
    /// a ready worker or join the line hold it together, so they wait on nothing but a decision that holds it alone (a
    /// worker turning ready, starting or retiring workers), which in turn sees every one of them committed.
    /// </summary>
    public async Task<PoolState> LockPoolAsync(string name, CancellationToken cancellationToken, bool shared = false)
    {
        await BeginAsync(cancellationToken);
        var sql = (Dialect, shared) switch
        {
            (DatabaseDialect.SqlServer, false) => """SELECT * FROM "pools" WITH (XLOCK, ROWLOCK) WHERE "Name" = {0}""",
            (DatabaseDialect.SqlServer, true)
                => """SELECT * FROM "pools" WITH (HOLDLOCK, ROWLOCK) WHERE "Name" = {0}""",
            (DatabaseDialect.Postgres, false) => """SELECT * FROM "pools" WHERE "Name" = {0} FOR UPDATE""",
            (DatabaseDialect.Postgres, true) => """SELECT * FROM "pools" WHERE "Name" = {0} FOR SHARE""",
            _ => """SELECT * FROM "pools" WHERE "Name" = {0}""",
        };
        var pool = (await db.Set<PoolState>().FromSqlRaw(sql, name).AsTracking().ToListAsync(cancellationToken))
            .SingleOrDefault();
        if (pool is not null)
        {
            // A removed pool has no configured image to adopt: it only drains.
            if (!shared && !IsDraining(name))
            {
                await AdoptConfiguredImageAsync(pool, cancellationToken);
            }

            return pool;
        }

        var definition = Definition(name);
        pool = new PoolState
        {
            Name = name, HotTarget = definition.HotTarget, MaxWorkers = definition.MaxWorkers,
            Image = definition.Image, ConfiguredImage = definition.Image,
        };
        db.Add(pool);
        // Inserted now so that a copy opening the same pool waits on this row (and retries on its key) instead of
        // racing.
        await db.SaveChangesAsync(cancellationToken);
        return pool;
    }

    /// <summary>
    /// A changed <c>Pools:&lt;name&gt;:Image</c> becomes the pool's image (and rolls out); an unchanged one leaves a
    /// <c>SetPoolImage</c> in force. A row from before images were recorded takes the configured one, and so do its
    /// workers.
    /// </summary>
    async Task AdoptConfiguredImageAsync(PoolState pool, CancellationToken cancellationToken)
    {
        var configured = Definition(pool.Name).Image;
        if (pool.ConfiguredImage == configured)
        {
            return;
        }

        if (pool.ConfiguredImage.Length == 0)
        {
            await db.Set<WorkerState>().Where(w => w.Pool == pool.Name && w.Image == "")
                .ExecuteUpdateAsync(w => w.SetProperty(x => x.Image, configured), cancellationToken);
            pool.Image = configured;
        }
        else
        {
            logger.LogInformation("Pool {Pool}: configured image {Image} (was {OldImage})",
                pool.Name, configured, pool.ConfiguredImage);
            await ChangeImageAsync(pool, configured, cancellationToken);
        }

        pool.ConfiguredImage = configured;
    }

    /// <summary>
    /// The image the pool's new workers get from now on; the next rebalance replaces the others. The caller holds the
    /// pool's lock alone.
    /// </summary>
    public async Task ChangeImageAsync(PoolState pool, string image, CancellationToken cancellationToken)
    {
        if (pool.Image == image)
        {
            return;
        }

        logger.LogInformation("Pool {Pool}: image {Image} (was {OldImage}); workers of the old image are replaced",
            pool.Name, image, pool.Image);
        pool.Image = image;
        // A release reads the image without the pool's lock: one that read the old image meanwhile fails its version
        // check and decides again. A worker this transaction holds is decided here, on the new image, and keeps its
        // version.
        var deciding = db.ChangeTracker.Entries<WorkerState>().Select(e => e.Entity.CorrelationId).ToList();
        await db.Set<WorkerState>()
            .Where(w => w.Pool == pool.Name && w.CurrentState == WorkerStates.Leased && w.Image != image
                        && !deciding.Contains(w.CorrelationId))
            .ExecuteUpdateAsync(w => w.SetProperty(x => x.Version, x => x.Version + 1), cancellationToken);
    }

    /// <summary>
    /// Under the shared lock: whether the pool may be short of workers (fewer spare than its hot target plus its line,
    /// and room below <c>MaxWorkers</c>, or idle workers to retire for the line), so that the pool keeper should
    /// decide, under the lock held alone.
    /// </summary>
    public async Task<bool> MayNeedWorkersAsync(PoolState pool, LeaseState? unsavedLease,
        CancellationToken cancellationToken)
    {
        var counts = await CountAsync(pool.Name, cancellationToken);
        counts = counts with { Waiting = counts.Waiting + (unsavedLease is { WorkerId: null } ? 1 : 0) };
        return !(pool.BackoffUntil > clock.GetUtcNow())
               && (counts.Live < pool.MaxWorkers && counts.Spare < pool.HotTarget + counts.Waiting
                   || IdleToRetire(counts) > 0);
    }

    /// <summary>
    /// The same question without the pool's lock, for a decision that took no hot worker (a worker reaped before
    /// re-use): the pool keeper asks it again under its own lock.
    /// </summary>
    public async Task<bool> MayNeedWorkersAsync(string pool, CancellationToken cancellationToken)
        => await db.Set<PoolState>().AsNoTracking()
               .SingleOrDefaultAsync(p => p.Name == pool, cancellationToken) is not { } stored
           || await MayNeedWorkersAsync(stored, null, cancellationToken);

    /// <summary>
    /// Leases in line that neither a spare worker nor the room left below <c>MaxWorkers</c> will serve, at most the
    /// idle workers there are: that many idle workers must go to make room. None while the pool is above its maximum
    /// (after <c>SetPoolSize</c> lowered it): retiring then would start no replacement.
    /// </summary>
    static int IdleToRetire(PoolCounts counts)
    {
        var room = counts.MaxWorkers - counts.Live;
        return room < 0 ? 0 : Math.Clamp(counts.Waiting - counts.Spare - room, 0, counts.Idle);
    }

    /// <summary>
    /// Fair share: the instance's open leases in the pool (granted, being granted or waiting) and how many of them
    /// wait, counted under a lock of that instance in that pool held until this transaction commits, so two requests of
    /// one instance decided at once on two copies never both take its last place. Other instances' requests never wait
    /// on it. The instance's lifecycle limits come in the same round trip.
    /// </summary>
    public async Task<InstanceShare> InstanceShareAsync(string pool, string instanceId,
        CancellationToken cancellationToken)
    {
        await BeginAsync(cancellationToken);
        var key = BitConverter.ToInt64(SHA256.HashData(Encoding.UTF8.GetBytes($"fair-share\n{pool}\n{instanceId}")));
        // The lock and the count go in one batch (one round trip); each statement sees what committed before it ran.
        var lockStatement = Dialect switch
        {
            DatabaseDialect.Postgres => "SELECT pg_advisory_xact_lock(@key);\n",
            // sp_getapplock reports a deadlock by its return value, not an error: thrown, so the message is retried.
            DatabaseDialect.SqlServer => """
                DECLARE @lockResult int;
                EXEC @lockResult = sp_getapplock @Resource = @resource, @LockMode = 'Exclusive',
                    @LockOwner = 'Transaction', @LockTimeout = -1;
                IF @lockResult < 0 THROW 51000, 'the fair-share lock was not granted', 1;

                """,
            // SQLite has one writer: no other transaction writes until this one ends.
            _ => "",
        };
        await using var command = db.Database.GetDbConnection().CreateCommand();
        command.Transaction = db.Database.CurrentTransaction!.GetDbTransaction();
        command.CommandText = lockStatement + """
            SELECT COUNT(*),
                COALESCE(SUM(CASE WHEN "WorkerId" IS NULL AND "CurrentState" <> @granted THEN 1 ELSE 0 END), 0)
            FROM "leases" WHERE "InstanceId" = @instance AND "Pool" = @pool
                AND "CurrentState" IN (@allocating, @waiting, @granted);
            SELECT "IdleTimeout", "MaxWorkerAge", "MaxLeaseDuration" FROM "instance_lifecycles"
            WHERE "InstanceId" = @instance
            """;
        AddParameter(command, "instance", instanceId);
        AddParameter(command, "pool", pool);
        AddParameter(command, "allocating", LeaseStates.Allocating);
        AddParameter(command, "waiting", LeaseStates.WaitingForWorker);
        AddParameter(command, "granted", LeaseStates.Granted);
        if (Dialect == DatabaseDialect.Postgres)
        {
            AddParameter(command, "key", key);
        }
        else if (Dialect == DatabaseDialect.SqlServer)
        {
            AddParameter(command, "resource", $"dw-fair-share-{key:x16}");
        }

        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        // PostgreSQL's lock answers with a result of its own (one void column) before the counts.
        while (reader.FieldCount != 2 && await reader.NextResultAsync(cancellationToken))
        {
        }

        await reader.ReadAsync(cancellationToken);
        var (open, waiting) = (Convert.ToInt32(reader.GetValue(0)), Convert.ToInt32(reader.GetValue(1)));
        // The instance's lifecycle overrides come in the same round trip: a re-use needs its max lease duration.
        await reader.NextResultAsync(cancellationToken);
        var custom = await reader.ReadAsync(cancellationToken);
        return new InstanceShare(open, waiting, lifecycles.With(
            Override(custom, 0, nameof(InstanceLifecycle.IdleTimeout)),
            Override(custom, 1, nameof(InstanceLifecycle.MaxWorkerAge)),
            Override(custom, 2, nameof(InstanceLifecycle.MaxLeaseDuration))));

        // Read as the model stores the column (SQL Server as ticks, see SqlServerDynamicWorkersDbContext).
        TimeSpan? Override(bool custom, int column, string property)
        {
            if (!custom || reader.IsDBNull(column))
            {
                return null;
            }

            var converter = db.Model.FindEntityType(typeof(InstanceLifecycle))!.FindProperty(property)!
                .GetTypeMapping().Converter;
            return converter is null
                ? reader.GetFieldValue<TimeSpan>(column)
                : (TimeSpan)converter.ConvertFromProvider(reader.GetValue(column))!;
        }
    }

    /// <summary>An instance's open leases in a pool, how many of them wait, and the limits it leases under.</summary>
    public readonly record struct InstanceShare(int Open, int Waiting, EffectiveLifecycle Limits);

    static void AddParameter(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }

    /// <summary>Re-use: an idle worker that trusts this very instance and certificate.</summary>
    public Task<WorkerState?> ClaimIdleAsync(string pool, string instanceId, string thumbprint,
        CancellationToken cancellationToken)
        => ClaimAsync<WorkerState>("workers",
            """ "Pool" = {0} AND "TrustedInstanceId" = {1} AND "CurrentState" = {2}"""
            + """ AND UPPER("TrustedThumbprint") = UPPER({3}) """,
            """ "LastLeaseEndedAt" DESC """, cancellationToken, pool, instanceId, WorkerStates.Idle, thumbprint);

    /// <summary>
    /// An idle worker no lease at the head of the line could re-use (it trusts another instance or certificate, or a
    /// lease of another instance has waited longer than any of its own), idle longest first: the one to give up when
    /// the pool is at <c>MaxWorkers</c> and leases wait.
    /// </summary>
    Task<WorkerState?> ClaimIdleToRetireAsync(string pool, CancellationToken cancellationToken)
        => ClaimAsync<WorkerState>("workers",
            """
            "Pool" = {0} AND "CurrentState" = {1} AND NOT EXISTS (SELECT 1 FROM "leases" AS "l" WHERE "l"."Pool" = {0}
                AND "l"."CurrentState" IN ({2}, {3}) AND "l"."WorkerId" IS NULL
                AND "l"."InstanceId" = "workers"."TrustedInstanceId"
                AND UPPER("l"."ServerThumbprint") = UPPER("workers"."TrustedThumbprint")
                AND "l"."ReceivedAt" <= COALESCE((SELECT MIN("o"."ReceivedAt") FROM "leases" AS "o"
                    WHERE "o"."Pool" = {0} AND "o"."CurrentState" IN ({2}, {3}) AND "o"."WorkerId" IS NULL
                    AND "o"."InstanceId" <> "workers"."TrustedInstanceId"), "l"."ReceivedAt"))
            """,
            """ "LastLeaseEndedAt" """, cancellationToken,
            pool, WorkerStates.Idle, LeaseStates.Allocating, LeaseStates.WaitingForWorker);

    /// <summary>
    /// A hot worker for a lease, oldest first; of <paramref name="currentImage"/>, when given, before any of an older
    /// one.
    /// </summary>
    public Task<WorkerState?> ClaimReadyAsync(string pool, CancellationToken cancellationToken,
        string? currentImage = null)
        => currentImage is null
            ? ClaimAsync<WorkerState>("workers", """ "Pool" = {0} AND "CurrentState" = {1} """,
                """ "ProvisionedAt" """, cancellationToken, pool, WorkerStates.Ready)
            : ClaimAsync<WorkerState>("workers", """ "Pool" = {0} AND "CurrentState" = {1} """,
                """ CASE WHEN "Image" = {2} THEN 0 ELSE 1 END, "ProvisionedAt" """, cancellationToken,
                pool, WorkerStates.Ready, currentImage);

    /// <summary>A surplus hot worker to retire: the newest.</summary>
    Task<WorkerState?> ClaimNewestReadyAsync(string pool, CancellationToken cancellationToken)
        => ClaimAsync<WorkerState>("workers", """ "Pool" = {0} AND "CurrentState" = {1} """,
            """ "ProvisionedAt" DESC """, cancellationToken, pool, WorkerStates.Ready);

    /// <summary>
    /// A worker in <paramref name="state"/> (hot or idle) of an image other than the pool's, the longest in that state
    /// first.
    /// </summary>
    Task<WorkerState?> ClaimOutdatedAsync(PoolState pool, string state, CancellationToken cancellationToken)
        => ClaimAsync<WorkerState>("workers", """ "Pool" = {0} AND "CurrentState" = {1} AND "Image" <> {2} """,
            state == WorkerStates.Idle ? """ "LastLeaseEndedAt" """ : """ "ProvisionedAt" """, cancellationToken,
            pool.Name, state, pool.Image);

    /// <summary>The lease that has waited longest for a worker (of one instance and certificate, when given).</summary>
    public Task<LeaseState?> ClaimWaitingAsync(string pool, CancellationToken cancellationToken,
        string? instanceId = null, string? thumbprint = null)
        => instanceId is null
            ? ClaimAsync<LeaseState>("leases",
                """ "Pool" = {0} AND "CurrentState" IN ({1}, {2}) AND "WorkerId" IS NULL """,
                """ "ReceivedAt" """, cancellationToken, pool, LeaseStates.Allocating, LeaseStates.WaitingForWorker)
            : ClaimAsync<LeaseState>("leases",
                """ "Pool" = {0} AND "CurrentState" IN ({1}, {2}) AND "WorkerId" IS NULL AND "InstanceId" = {3}"""
                + """ AND UPPER("ServerThumbprint") = UPPER({4}) """,
                """ "ReceivedAt" """, cancellationToken,
                pool, LeaseStates.Allocating, LeaseStates.WaitingForWorker, instanceId, thumbprint!);

    async Task<T?> ClaimAsync<T>(string table, string where, string order, CancellationToken cancellationToken,
        params object[] arguments)
        where T : class
    {
        await BeginAsync(cancellationToken);
        // A row this transaction claimed is locked by it, which SKIP LOCKED does not skip, and not saved yet: left out
        // by id.
        if (_claimed.Count > 0)
        {
            where += $""" AND "CorrelationId" NOT IN ({string.Join(", ",
                _claimed.Select((_, i) => $"{{{arguments.Length + i}}}"))})""";
            arguments = [.. arguments, .. _claimed.Cast<object>()];
        }

        var sql = Dialect switch
        {
            DatabaseDialect.SqlServer
                => $"""SELECT TOP(1) * FROM "{table}" WITH (UPDLOCK, READPAST, ROWLOCK)"""
                   + $""" WHERE {where} ORDER BY {order}""",
            DatabaseDialect.Postgres
                => $"""SELECT * FROM "{table}" WHERE {where} ORDER BY {order} LIMIT 1 FOR UPDATE SKIP LOCKED""",
            // SQLite has one writer: the transaction began IMMEDIATE, so nobody else can claim meanwhile.
            _ => $"""SELECT * FROM "{table}" WHERE {where} ORDER BY {order} LIMIT 1""",
        };
        var row = (await db.Set<T>().FromSqlRaw(sql, arguments).AsTracking().ToListAsync(cancellationToken))
            .SingleOrDefault();
        if (row is not null)
        {
            _claimed.Add(db.Entry(row).Property<Guid>("CorrelationId").CurrentValue);
        }

        return row;
    }

    /// <summary>
    /// The worker starts trusting the lease's instance for that lease (a hot worker, or a new one that just became
    /// ready).
    /// </summary>
    public Task AssignAsync(ConsumeContext context, WorkerState worker, LeaseState lease)
    {
        RecordIdleTime(worker);
        worker.CurrentState = WorkerStates.Trusting;
        worker.CurrentLeaseId = lease.CorrelationId;
        worker.TrustedInstanceId = lease.InstanceId;
        worker.TrustedThumbprint = lease.ServerThumbprint;
        worker.TrustStartedAt = clock.GetUtcNow();
        Touch(worker);
        lease.WorkerId = worker.CorrelationId;
        if (db.Entry(lease).State != EntityState.Detached)
        {
            lease.Version++;
        }

        logger.LogInformation("Pool {Pool}: lease {LeaseId} of {InstanceId} gets worker {WorkerId}",
            worker.Pool, lease.CorrelationId, lease.InstanceId, worker.CorrelationId);
        return context.Send(CloudQueues.Address(CloudQueues.TrustWorker),
            new TrustWorker(worker.CorrelationId, lease.CorrelationId, lease.InstanceId, lease.ServerThumbprint));
    }

    /// <summary>The worker, if it is leased to <paramref name="leaseId"/> now.</summary>
    public Task<WorkerState?> ServingAsync(Guid workerId, Guid leaseId, CancellationToken cancellationToken)
        => db.Set<WorkerState>().AsNoTracking().SingleOrDefaultAsync(
            w => w.CorrelationId == workerId && w.CurrentState == WorkerStates.Leased && w.CurrentLeaseId == leaseId,
            cancellationToken);

    /// <summary>
    /// The worker's row, tracked (null once it is gone), with the limits of the instance it trusts, in one round trip.
    /// </summary>
    public async Task<(WorkerState? Worker, EffectiveLifecycle Limits)> WorkerAsync(Guid workerId,
        CancellationToken cancellationToken)
    {
        var read = await WithOverrides(workerId).SingleOrDefaultAsync(cancellationToken);
        return (read?.Worker, Limits(read));
    }

    /// <summary>A worker's row, tracked, and the lifecycle overrides of the instance it trusts (null: none).</summary>
    sealed class WorkerRead
    {
        public required WorkerState Worker { get; init; }
        public TimeSpan? IdleTimeout { get; init; }
        public TimeSpan? MaxWorkerAge { get; init; }
        public TimeSpan? MaxLeaseDuration { get; init; }
    }

    IQueryable<WorkerRead> WithOverrides(Guid workerId)
    {
        var overrides = db.Set<InstanceLifecycle>();
        return db.Set<WorkerState>().AsTracking()
            .Where(w => w.CorrelationId == workerId)
            .Select(w => new WorkerRead
            {
                Worker = w,
                IdleTimeout = overrides.Where(l => l.InstanceId == w.TrustedInstanceId)
                    .Select(l => l.IdleTimeout).FirstOrDefault(),
                MaxWorkerAge = overrides.Where(l => l.InstanceId == w.TrustedInstanceId)
                    .Select(l => l.MaxWorkerAge).FirstOrDefault(),
                MaxLeaseDuration = overrides.Where(l => l.InstanceId == w.TrustedInstanceId)
                    .Select(l => l.MaxLeaseDuration).FirstOrDefault(),
            });
    }

    EffectiveLifecycle Limits(WorkerRead? read)
        => lifecycles.With(read?.IdleTimeout, read?.MaxWorkerAge, read?.MaxLeaseDuration);

    /// <summary>
    /// The worker confirmed its trust: it serves the lease it trusted for from now on, under its instance's
    /// <paramref name="limits"/>. Returns the lease's expiry.
    /// </summary>
    public DateTimeOffset BeginLease(WorkerState worker, string agentThumbprint, EffectiveLifecycle limits)
    {
        worker.MaxAgeDeadline = worker.ProvisionedAt + limits.MaxWorkerAge;
        worker.AgentThumbprint = agentThumbprint;
        var expiresAt = Lease(worker, worker.CurrentLeaseId!.Value, limits);
        logger.LogInformation("Worker {WorkerId} of {Pool} leased (instance {InstanceId}, lease {LeaseId})",
            worker.CorrelationId, worker.Pool, worker.TrustedInstanceId, worker.CurrentLeaseId);
        return expiresAt;
    }

    /// <summary>
    /// The worker serves <paramref name="leaseId"/> from now on (it already trusts the instance, whose
    /// <paramref name="limits"/> these are); returns its expiry.
    /// </summary>
    public DateTimeOffset LeaseAgain(WorkerState worker, Guid leaseId, EffectiveLifecycle limits)
    {
        RecordIdleTime(worker);
        var expiresAt = Lease(worker, leaseId, limits);
        logger.LogInformation("Worker {WorkerId} of {Pool} leased again (instance {InstanceId}, lease {LeaseId})",
            worker.CorrelationId, worker.Pool, worker.TrustedInstanceId, leaseId);
        return expiresAt;
    }

    /// <summary>The worker serves <paramref name="leaseId"/>, for the instance's max lease duration from now.</summary>
    DateTimeOffset Lease(WorkerState worker, Guid leaseId, EffectiveLifecycle limits)
    {
        worker.CurrentState = WorkerStates.Leased;
        worker.CurrentLeaseId = leaseId;
        worker.LeaseCount++;
        worker.LeaseExpiresAt = WholeMilliseconds(clock.GetUtcNow()) + limits.MaxLeaseDuration;
        Touch(worker);
        return worker.LeaseExpiresAt.Value;
    }

    /// <summary>
    /// The lease <paramref name="leaseId"/> of the worker ended: it goes idle for its instance, or straight to a lease
    /// of that instance waiting in line unless, at <c>MaxWorkers</c>, a lease of another instance has waited longer.
    /// False when the worker no longer serves that lease (revoked or reaped meanwhile).
    /// </summary>
    public async Task<bool> EndLeaseAsync(ConsumeContext context, Guid workerId, Guid leaseId)
    {
        var cancellationToken = context.CancellationToken;
        await BeginAsync(cancellationToken);
        // The pool's image and the instance's limits come with the worker, in one round trip, read without the pool's
        // lock: a change of image meanwhile bumps the worker's version (see ChangeImageAsync), so this release is
        // retried rather than saved.
        var read = await WithOverrides(workerId)
            .Select(r => new
            {
                Read = r,
                PoolImage = db.Set<PoolState>().Where(p => p.Name == r.Worker.Pool).Select(p => p.Image)
                    .FirstOrDefault(),
            })
            .SingleOrDefaultAsync(cancellationToken);
        if (read?.Read.Worker is not { } worker || worker.CurrentState != WorkerStates.Leased
            || worker.CurrentLeaseId != leaseId)
        {
            return false;
        }

        var now = clock.GetUtcNow();
        if (IsDraining(worker.Pool))
        {
            EndLease(worker, leaseId, now);
            await ReapAsync(context, worker, ReapReasons.Idle, RemovedPoolDetail(worker.Pool));
            return true;
        }

        var poolImage = db.Set<PoolState>().Local.FirstOrDefault(p => p.Name == worker.Pool)?.Image ?? read.PoolImage;
        if (!string.IsNullOrEmpty(poolImage) && worker.Image.Length > 0 && worker.Image != poolImage)
        {
            // Image rollout: a leased worker of an older image is never interrupted, and deleted instead of going idle.
            EndLease(worker, leaseId, now);
            await ReapAsync(context, worker, ReapReasons.Image,
                $"its lease ended and the pool's image is newer than {worker.Image}");
            await context.Publish(new ReconcilePool(worker.Pool));
            return true;
        }

        worker.CurrentState = WorkerStates.Idle;
        EndLease(worker, leaseId, now);
        var limits = Limits(read.Read);
        worker.IdleDeadline = now + limits.IdleTimeout;
        Touch(worker);
        logger.LogInformation("Worker {WorkerId} of {Pool} idle (instance {InstanceId}, lease {LeaseId})",
            worker.CorrelationId, worker.Pool, worker.TrustedInstanceId, leaseId);

        // Fair share: at MaxWorkers a lease of another instance that waited longer goes first (the keeper retires this
        // worker for it); a lease claimed here and not used is only unlocked at commit. With no line, one index seek.
        var anyWaiting = await AnyWaitingAsync(worker.Pool, cancellationToken);
        var next = anyWaiting
            ? await ClaimWaitingAsync(worker.Pool, cancellationToken,
                worker.TrustedInstanceId, worker.TrustedThumbprint)
            : null;
        var yields = next is not null && await AnotherInstanceWaitedLongerAsync(worker, cancellationToken)
                     && IdleToRetire(await CountAsync(worker.Pool, cancellationToken)) > 0;
        if (next is not null && !yields)
        {
            next.WorkerId = worker.CorrelationId;
            next.Version++;
            var expiresAt = LeaseAgain(worker, next.CorrelationId, limits);
            await context.Publish(new WorkerLeased(next.CorrelationId, worker.CorrelationId, worker.Address!,
                worker.AgentThumbprint!, Reused: true, expiresAt));
        }
        else if (yields || next is null && anyWaiting
                 && IdleToRetire(await CountAsync(worker.Pool, cancellationToken)) > 0)
        {
            // Leases of other instances wait at MaxWorkers: the pool keeper retires idle workers (maybe this one) for
            // them.
            await context.Publish(new ReconcilePool(worker.Pool));
        }

        await ArmTimerAsync(context, worker);
        return true;
    }

    static void EndLease(WorkerState worker, Guid leaseId, DateTimeOffset now)
        => (worker.LastLeaseId, worker.CurrentLeaseId, worker.LeaseExpiresAt, worker.LastLeaseEndedAt) =
            (leaseId, null, null, now);

    /// <summary>
    /// The worker chosen for a lease failed: the lease gets a ready worker at once if there is one, else it goes back
    /// in line at its place by arrival (and is told so, to arm its allocation timer). Nothing if it no longer waits for
    /// that worker. The caller holds the pool's lock.
    /// </summary>
    public async Task RequeueAsync(ConsumeContext context, Guid leaseId, Guid workerId)
    {
        var cancellationToken = context.CancellationToken;
        await BeginAsync(cancellationToken);
        var lease = await db.Set<LeaseState>().AsTracking()
            .SingleOrDefaultAsync(l => l.CorrelationId == leaseId, cancellationToken);
        if (lease is null || lease.WorkerId != workerId || !LeaseStates.Waiting.Contains(lease.CurrentState))
        {
            return;
        }

        lease.WorkerId = null;
        lease.Version++;
        var image = db.Set<PoolState>().Local.FirstOrDefault(p => p.Name == lease.Pool)?.Image;
        if (IsDraining(lease.Pool))
        {
            await context.Publish(
                new RejectWaitingLease(leaseId, LeaseRejectionReasons.UnknownPool, RemovedPoolDetail(lease.Pool)));
        }
        else if (await ClaimReadyAsync(lease.Pool, cancellationToken, image) is { } ready)
        {
            await AssignAsync(context, ready, lease);
        }
        else
        {
            await context.Publish(new LeaseQueued(leaseId));
        }
    }

    /// <summary>
    /// Serves waiting leases with ready workers, retires hot workers beyond the target, then starts the workers the
    /// pool is short of: its hot target plus one per waiting lease, never above <c>MaxWorkers</c> nor while it backs
    /// off. Image rollout: idle workers of an older image go at once; while hot ones remain, up to <c>RolloutSurge</c>
    /// new-image workers start beyond the target and each that turns ready retires an old hot one, so the hot pool
    /// never drops below its target (at <c>MaxWorkers</c>, old hot workers go first to make room).
    /// <paramref name="unsavedLease"/> is the lease deciding now, not yet saved, if it waits.
    /// </summary>
    /// <param name="readyWorker">a worker turning ready in this transaction: its row still says provisioning, so no
    /// claim finds it</param>
    public async Task RebalanceAsync(ConsumeContext context, PoolState pool, LeaseState? unsavedLease = null,
        WorkerState? readyWorker = null)
    {
        var cancellationToken = context.CancellationToken;
        if (IsDraining(pool.Name))
        {
            await DrainAsync(context, pool, readyWorker);
            return;
        }

        var (waiting, spare, live, idle, _) = await CountAsync(pool.Name, cancellationToken);
        var rollout = await CountRolloutAsync(pool, cancellationToken);
        var surge = Definition(pool.Name).RolloutSurge;
        waiting += unsavedLease is { WorkerId: null } ? 1 : 0;
        while (waiting > 0 && await ClaimReadyAsync(pool.Name, cancellationToken, pool.Image) is { } ready)
        {
            if (await ClaimWaitingAsync(pool.Name, cancellationToken) is not { } lease)
            {
                break;
            }

            await AssignAsync(context, ready, lease);
            waiting--;
            spare--;
            rollout = ready.Image == pool.Image ? rollout : rollout.OneOldReadyGone();
        }

        for (var outdated = rollout.OldIdle; outdated > 0; outdated--)
        {
            if (await ClaimOutdatedAsync(pool, WorkerStates.Idle, cancellationToken) is not { } old)
            {
                break;
            }

            await ReapAsync(context, old, ReapReasons.Image, $"idle on image {old.Image}, the pool's is {pool.Image}");
            live--;
            idle--;
        }

        // A new-image worker still provisioning keeps an old hot one in service until it is ready to take its place.
        var replacing = Math.Min(rollout.NewProvisioning, rollout.OldReady);
        for (var surplus = spare - pool.HotTarget - waiting - replacing; surplus > 0; surplus--)
        {
            if (await ClaimSurplusAsync(pool, readyWorker, rollout.OldReady > 0, cancellationToken) is not { } extra)
            {
                break;
            }

            spare--;
            live--;
            if (extra.Image != pool.Image)
            {
                rollout = rollout.OneOldReadyGone();
                logger.LogInformation(
                    "Pool {Pool}: retiring hot worker {WorkerId} of image {Image}, replaced by one of {PoolImage}",
                    pool.Name, extra.CorrelationId, extra.Image, pool.Image);
                await ReapAsync(context, extra, ReapReasons.Image,
                    $"hot on image {extra.Image}, the pool's is {pool.Image}");
                continue;
            }

            logger.LogInformation("Pool {Pool}: retiring surplus hot worker {WorkerId} (hot target {HotTarget})",
                pool.Name, extra.CorrelationId, pool.HotTarget);
            await ReapAsync(context, extra, ReapReasons.Idle, "surplus hot worker");
        }

        if (pool.BackoffUntil is { } until && until > clock.GetUtcNow())
        {
            return;
        }

        // Fair share: at MaxWorkers an idle worker, kept for an instance that may come back, yields to a lease that
        // waits now.
        for (var retire = IdleToRetire(new PoolCounts(waiting, spare, live, idle, pool.MaxWorkers));
             retire > 0;
             retire--)
        {
            if (await ClaimIdleToRetireAsync(pool.Name, cancellationToken) is not { } given)
            {
                break;
            }

            logger.LogInformation("Pool {Pool}: retiring idle worker {WorkerId} of {InstanceId} "
                                  + "to make room for a waiting lease ({MaxWorkers} workers at most)",
                pool.Name, given.CorrelationId, given.TrustedInstanceId, pool.MaxWorkers);
            // Reason idle: an idle worker given up before its idle timeout; the metric's reasons name no closer one.
            await ReapAsync(context, given, ReapReasons.Idle,
                "retired early: the pool is at MaxWorkers and a lease it cannot serve waits");
            live--;
        }

        // At MaxWorkers a rollout has no room to surge: old hot workers make room for their replacements, a few at a
        // time.
        var makeRoom = Math.Min(surge, rollout.OldReady);
        if (live >= pool.MaxWorkers && makeRoom > 0 && rollout.NewProvisioning == 0
            && live - makeRoom < pool.MaxWorkers)
        {
            for (;
                 makeRoom > 0 && await ClaimOutdatedAsync(pool, WorkerStates.Ready, cancellationToken) is { } old;
                 makeRoom--)
            {
                logger.LogInformation("Pool {Pool}: at {MaxWorkers} workers, retiring hot worker {WorkerId} "
                                      + "of image {Image} to start one of {PoolImage}",
                    pool.Name, pool.MaxWorkers, old.CorrelationId, old.Image, pool.Image);
                await ReapAsync(context, old, ReapReasons.Image,
                    $"hot on image {old.Image}, making room for one of {pool.Image}");
                spare--;
                live--;
                rollout = rollout.OneOldReadyGone();
            }
        }

        var count = Math.Max(0, Math.Min(pool.HotTarget + waiting - spare + Math.Min(surge, rollout.OldSpare),
            pool.MaxWorkers - live));
        if (count == 0)
        {
            return;
        }

        var definition = Definition(pool.Name);
        for (var i = 0; i < count; i++)
        {
            var worker = new WorkerState
            {
                CorrelationId = NewId.NextGuid(), Pool = pool.Name, Image = pool.Image,
                CurrentState = WorkerStates.Provisioning, CreatedAt = clock.GetUtcNow(),
            };
            // No timer while provisioning: the sweep enforces its deadline; the first timer is armed once it is ready.
            db.Add(worker);
            await context.Send(CloudQueues.Address(CloudQueues.ProvisionWorker),
                new ProvisionWorker(worker.CorrelationId, pool.Name, pool.Image, definition.Size));
        }

        logger.LogInformation("Pool {Pool}: starting {Count} worker(s), {Live} live of {MaxWorkers}",
            pool.Name, count, live + count, pool.MaxWorkers);
    }

    /// <summary>
    /// A removed pool instead of a rebalance: its waiting leases are told to end rejected, its hot and idle workers
    /// (and one turning ready now) are deleted, and nothing starts. Leased and trusting workers are deleted when their
    /// lease ends, provisioning ones once they report. Reason <c>idle</c>: like a surplus hot worker, each has nothing
    /// left to do.
    /// </summary>
    async Task DrainAsync(ConsumeContext context, PoolState pool, WorkerState? readyWorker)
    {
        var cancellationToken = context.CancellationToken;
        var detail = RemovedPoolDetail(pool.Name);
        var waiting = await db.Set<LeaseState>().AsNoTracking()
            .Where(l => l.Pool == pool.Name && LeaseStates.Waiting.Contains(l.CurrentState) && l.WorkerId == null)
            .Select(l => l.CorrelationId).ToListAsync(cancellationToken);
        foreach (var leaseId in waiting)
        {
            await context.Publish(new RejectWaitingLease(leaseId, LeaseRejectionReasons.UnknownPool, detail));
        }

        var reaped = 0;
        if (readyWorker is { CurrentState: WorkerStates.Ready })
        {
            await ReapAsync(context, readyWorker, ReapReasons.Idle, detail);
            reaped++;
        }

        while (await ClaimReadyAsync(pool.Name, cancellationToken) is { } hot)
        {
            await ReapAsync(context, hot, ReapReasons.Idle, detail);
            reaped++;
        }

        while (await ClaimAsync<WorkerState>("workers",
                   """ "Pool" = {0} AND "CurrentState" = {1} """, """ "LastLeaseEndedAt" """,
                   cancellationToken, pool.Name, WorkerStates.Idle) is { } idle)
        {
            await ReapAsync(context, idle, ReapReasons.Idle, detail);
            reaped++;
        }

        if (waiting.Count > 0 || reaped > 0)
        {
            logger.LogInformation("Pool {Pool} is not configured: draining ({Waiting} waiting lease(s) rejected, "
                                  + "{Reaped} free worker(s) deleted)",
                pool.Name, waiting.Count, reaped);
        }
    }

    /// <summary>
    /// The hot worker to retire when the pool has too many: one of an older image first (the worker turning ready if it
    /// is one), else the worker turning ready (the pool shrank while it was provisioning), else the newest.
    /// </summary>
    async Task<WorkerState?> ClaimSurplusAsync(PoolState pool, WorkerState? readyWorker, bool anyOutdated,
        CancellationToken cancellationToken)
    {
        var turningReady = readyWorker is { CurrentState: WorkerStates.Ready } ? readyWorker : null;
        if (turningReady is not null && turningReady.Image != pool.Image)
        {
            return turningReady;
        }

        if (anyOutdated && await ClaimOutdatedAsync(pool, WorkerStates.Ready, cancellationToken) is { } old)
        {
            return old;
        }

        return turningReady ?? await ClaimNewestReadyAsync(pool.Name, cancellationToken);
    }

    /// <summary>
    /// Starts deleting a worker: its row says so (it no longer counts), and the Reaper is told. The worker's own saga
    /// then waits for the delete; the caller holds the pool's lock when the worker was not its own saga's.
    /// </summary>
    public async Task ReapAsync(ConsumeContext context, WorkerState worker, string reason, string detail)
    {
        RecordIdleTime(worker);
        worker.CurrentState = WorkerStates.Reaping;
        worker.ReapReason = reason;
        worker.ReapStartedAt = clock.GetUtcNow();
        Touch(worker);
        logger.LogInformation("Worker {WorkerId} of {Pool} is deprovisioned ({Reason}: {Detail})",
            worker.CorrelationId, worker.Pool, reason, detail);
        await context.Send(CloudQueues.Address(CloudQueues.DeprovisionWorker),
            new DeprovisionWorker(worker.CorrelationId, reason));
    }

    /// <summary>
    /// A worker of the pool failed to start or to trust; from the third in a row the pool stops provisioning for a
    /// while.
    /// </summary>
    public async Task RecordFailureAsync(ConsumeContext context, PoolState pool)
    {
        pool.ConsecutiveFailures++;
        var now = clock.GetUtcNow();
        if (pool.ConsecutiveFailures >= FailuresBeforeBackoff && !(pool.BackoffUntil > now))
        {
            var delay = BackoffDelay(pool.ConsecutiveFailures);
            pool.BackoffUntil = now + delay;
            logger.LogWarning(
                "Pool {Pool}: {Failures} worker failures in a row, not provisioning until {BackoffUntil:O}",
                pool.Name, pool.ConsecutiveFailures, pool.BackoffUntil);
            await context.SchedulePublish(delay, new PoolBackoffEnded(pool.Name));
        }
    }

    /// <summary>
    /// The worker's earliest deadline for its timer: its max age, its lease's expiry or its idle timeout. Provisioning
    /// and trust have no timer of their own (it would mostly fire stale and re-arm): the sweep enforces theirs.
    /// </summary>
    public static DateTimeOffset? EarliestDeadline(WorkerState worker)
        => worker.CurrentState switch
        {
            WorkerStates.Ready or WorkerStates.Trusting => worker.MaxAgeDeadline,
            WorkerStates.Leased => Earlier(worker.MaxAgeDeadline, worker.LeaseExpiresAt),
            WorkerStates.Idle => Earlier(worker.MaxAgeDeadline, worker.IdleDeadline),
            _ => null,
        };

    /// <summary>
    /// Schedules the worker's timer for its earliest deadline unless one stands that is due no later, from whichever
    /// saga changed the worker; the new schedule removes the one it replaces (<see cref="ScheduleReplacement"/>), so the
    /// worker keeps one timer and a move costs one delivery. A hot worker's timer is due no later than a lease granted
    /// now would expire, so its grant moves it only for an instance whose leases are shorter than the default.
    /// </summary>
    public async Task ArmTimerAsync(ConsumeContext context, WorkerState worker)
    {
        var now = clock.GetUtcNow();
        var due = EarliestDeadline(worker);
        if (worker.CurrentState is WorkerStates.Ready or WorkerStates.Trusting)
        {
            due = Earlier(due, WholeMilliseconds(now) + lifecycle.CurrentValue.MaxLeaseDuration);
        }

        if (due is not { } deadline)
        {
            return;
        }

        var dueAt = deadline > now ? deadline : now;
        if (worker.TimerToken is not null && worker.TimerDueAt <= dueAt)
        {
            return;
        }

        var scheduled = await context.ScheduleSend(WorkerStateDefinition.Address, dueAt - now,
            new WorkerTimerDue(worker.CorrelationId), ScheduleReplacement.Of<WorkerTimerDue>(worker.TimerToken));
        (worker.TimerToken, worker.TimerDueAt) = (scheduled.TokenId, dueAt);
    }

    /// <summary>
    /// Every worker a saga other than its own changes gets a new version, so a decision its own saga made meanwhile is
    /// retried.
    /// </summary>
    void Touch(WorkerState worker)
    {
        if (db.Entry(worker).State != EntityState.Detached)
        {
            worker.Version++;
        }
    }

    /// <summary>
    /// A worker with no lease stops idling (it is claimed or deleted): count the time since it became ready or idle.
    /// </summary>
    public void RecordIdleTime(WorkerState worker)
    {
        if (worker.CurrentLeaseId is null && (worker.LastLeaseEndedAt ?? worker.ProvisionedAt) is { } since)
        {
            DwTelemetry.WorkerIdleSeconds.Add(Math.Max(0, (clock.GetUtcNow() - since).TotalSeconds),
                new KeyValuePair<string, object?>("pool", worker.Pool));
        }
    }

    /// <summary>
    /// Leases of the pool waiting for a worker: the rows as stored, corrected for what this transaction changed and has
    /// not saved.
    /// </summary>
    public async Task<int> WaitingAsync(string pool, CancellationToken cancellationToken)
    {
        var stored = await db.Set<LeaseState>().CountAsync(
            l => l.Pool == pool && LeaseStates.Waiting.Contains(l.CurrentState) && l.WorkerId == null,
            cancellationToken);
        return stored + Unsaved<LeaseState>(
            e => IsWaiting(e, pool, original: false), e => IsWaiting(e, pool, original: true));
    }

    /// <summary>
    /// Whether a lease of another instance has waited longer than every lease in line that could re-use the worker:
    /// asked only when one could. Raw SQL: SQLite's provider compares no <see cref="DateTimeOffset"/> in LINQ.
    /// </summary>
    Task<bool> AnotherInstanceWaitedLongerAsync(WorkerState worker, CancellationToken cancellationToken)
        => db.Set<LeaseState>().FromSqlRaw(
            """
            SELECT * FROM "leases" AS "o"
            WHERE "o"."Pool" = {0} AND "o"."CurrentState" IN ({1}, {2}) AND "o"."WorkerId" IS NULL
                AND "o"."InstanceId" <> {3}
                AND "o"."ReceivedAt" < (SELECT MIN("l"."ReceivedAt") FROM "leases" AS "l" WHERE "l"."Pool" = {0}
                    AND "l"."CurrentState" IN ({1}, {2}) AND "l"."WorkerId" IS NULL AND "l"."InstanceId" = {3}
                    AND UPPER("l"."ServerThumbprint") = UPPER({4}))
            """,
            worker.Pool, LeaseStates.Allocating, LeaseStates.WaitingForWorker, worker.TrustedInstanceId!,
            worker.TrustedThumbprint!).AnyAsync(cancellationToken);

    /// <summary>
    /// Whether any lease of the pool waits for a worker: one index seek, for a path that counts only if so.
    /// </summary>
    Task<bool> AnyWaitingAsync(string pool, CancellationToken cancellationToken)
        => db.Set<LeaseState>().AnyAsync(
            l => l.Pool == pool && LeaseStates.Waiting.Contains(l.CurrentState) && l.WorkerId == null,
            cancellationToken);

    /// <summary>
    /// The pool's waiting leases, spare workers (provisioning or ready), live and idle workers, and its stored maximum,
    /// in one round trip (it runs under the pool's lock), corrected for what this transaction changed and has not
    /// saved.
    /// </summary>
    async Task<PoolCounts> CountAsync(string pool, CancellationToken cancellationToken)
    {
        var stored = await db.Set<PoolState>().Where(p => p.Name == pool).Select(p => new
        {
            p.MaxWorkers,
            Waiting = db.Set<LeaseState>().Count(
                l => l.Pool == p.Name && LeaseStates.Waiting.Contains(l.CurrentState) && l.WorkerId == null),
            Spare = db.Set<WorkerState>().Count(w => w.Pool == p.Name && WorkerStates.Spare.Contains(w.CurrentState)),
            Live = db.Set<WorkerState>().Count(w => w.Pool == p.Name && WorkerStates.Live.Contains(w.CurrentState)),
            Idle = db.Set<WorkerState>().Count(w => w.Pool == p.Name && w.CurrentState == WorkerStates.Idle),
        }).SingleAsync(cancellationToken);
        return new PoolCounts(
            stored.Waiting + Unsaved<LeaseState>(
                e => IsWaiting(e, pool, original: false), e => IsWaiting(e, pool, original: true)),
            stored.Spare + UnsavedWorkers(pool, WorkerStates.Spare),
            stored.Live + UnsavedWorkers(pool, WorkerStates.Live),
            stored.Idle + UnsavedWorkers(pool, IdleOnly),
            stored.MaxWorkers);
    }

    static readonly string[] IdleOnly = [WorkerStates.Idle];
    static readonly string[] ReadyOnly = [WorkerStates.Ready];
    static readonly string[] ProvisioningOnly = [WorkerStates.Provisioning];

    /// <summary>
    /// How far an image rollout is: workers of an older image hot (ready, or spare: provisioning too) and idle, and
    /// new-image ones provisioning.
    /// </summary>
    readonly record struct RolloutCounts(int OldReady, int OldSpare, int OldIdle, int NewProvisioning)
    {
        /// <summary>One old-image hot worker fewer: it was leased or reaped.</summary>
        public RolloutCounts OneOldReadyGone() => this with { OldReady = OldReady - 1, OldSpare = OldSpare - 1 };
    }

    /// <summary>
    /// The rollout's counts, from the index of state and image, corrected for what this transaction changed and has not
    /// saved.
    /// </summary>
    async Task<RolloutCounts> CountRolloutAsync(PoolState pool, CancellationToken cancellationToken)
    {
        var (name, image) = (pool.Name, pool.Image);
        var stored = await db.Set<PoolState>().Where(p => p.Name == name).Select(p => new
        {
            OldReady = db.Set<WorkerState>().Count(
                w => w.Pool == name && w.CurrentState == WorkerStates.Ready && w.Image != image),
            OldSpare = db.Set<WorkerState>().Count(
                w => w.Pool == name && WorkerStates.Spare.Contains(w.CurrentState) && w.Image != image),
            OldIdle = db.Set<WorkerState>().Count(
                w => w.Pool == name && w.CurrentState == WorkerStates.Idle && w.Image != image),
            NewProvisioning = db.Set<WorkerState>().Count(
                w => w.Pool == name && w.CurrentState == WorkerStates.Provisioning && w.Image == image),
        }).SingleAsync(cancellationToken);
        return new RolloutCounts(
            stored.OldReady + UnsavedWorkers(name, ReadyOnly, i => i != image),
            stored.OldSpare + UnsavedWorkers(name, WorkerStates.Spare, i => i != image),
            stored.OldIdle + UnsavedWorkers(name, IdleOnly, i => i != image),
            stored.NewProvisioning + UnsavedWorkers(name, ProvisioningOnly, i => i == image));
    }

    readonly record struct PoolCounts(int Waiting, int Spare, int Live, int Idle, int MaxWorkers);

    int UnsavedWorkers(string pool, string[] states, Func<string, bool>? image = null)
        => Unsaved<WorkerState>(
            e => e.Entity.Pool == pool && states.Contains(e.Entity.CurrentState)
                 && (image is null || image(e.Entity.Image)),
            e => e.OriginalValues.GetValue<string>(nameof(WorkerState.Pool)) == pool
                 && states.Contains(e.OriginalValues.GetValue<string>(nameof(WorkerState.CurrentState)))
                 && (image is null || image(e.OriginalValues.GetValue<string>(nameof(WorkerState.Image)))));

    static bool IsWaiting(EntityEntry<LeaseState> entry, string pool, bool original)
    {
        var values = original ? entry.OriginalValues : entry.CurrentValues;
        return values.GetValue<string>(nameof(LeaseState.Pool)) == pool
               && LeaseStates.Waiting.Contains(values.GetValue<string>(nameof(LeaseState.CurrentState)))
               && values.GetValue<Guid?>(nameof(LeaseState.WorkerId)) is null;
    }

    /// <summary>How many more (or fewer) rows match once this transaction's tracked changes are saved.</summary>
    int Unsaved<T>(Func<EntityEntry<T>, bool> matchesNow, Func<EntityEntry<T>, bool> matchedBefore)
        where T : class
    {
        var difference = 0;
        foreach (var entry in db.ChangeTracker.Entries<T>())
        {
            var now = entry.State != EntityState.Deleted && matchesNow(entry);
            var before = entry.State != EntityState.Added && matchedBefore(entry);
            difference += (now ? 1 : 0) - (before ? 1 : 0);
        }

        return difference;
    }

    DatabaseDialect Dialect => db.Database.ProviderName switch
    {
        "Microsoft.EntityFrameworkCore.SqlServer" => DatabaseDialect.SqlServer,
        "Npgsql.EntityFrameworkCore.PostgreSQL" => DatabaseDialect.Postgres,
        _ => DatabaseDialect.Sqlite,
    };

    enum DatabaseDialect
    {
        Sqlite,
        Postgres,
        SqlServer,
    }

    /// <summary>
    /// The database keeps less than .NET's 100 ns ticks (PostgreSQL: microseconds); a repeat answers from the stored
    /// row.
    /// </summary>
    public static DateTimeOffset WholeMilliseconds(DateTimeOffset at)
        => at.AddTicks(-(at.Ticks % TimeSpan.TicksPerMillisecond));

    static DateTimeOffset? Earlier(DateTimeOffset? a, DateTimeOffset? b)
        => a is null ? b : b is null ? a : a < b ? a : b;
}
