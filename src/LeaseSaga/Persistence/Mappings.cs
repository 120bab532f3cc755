using System.Runtime.CompilerServices;
using System.Text.Json;
using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.LeaseSaga.Instances;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.ChangeTracking;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace DynamicWorkers.LeaseSaga.Persistence;

sealed class LeaseMapping : IEntityTypeConfiguration<LeaseState>
{
    public void Configure(EntityTypeBuilder<LeaseState> entity)
    {
        entity.MapSaga("leases");
        entity.Property(x => x.CurrentState).HasMaxLength(64);
        entity.Property(x => x.InstanceId).HasMaxLength(LeaseRequestValidation.MaxInstanceIdLength);
        entity.Property(x => x.ServerThumbprint).HasMaxLength(LeaseRequestValidation.MaxThumbprintLength);
        entity.Property(x => x.Pool).HasMaxLength(LeaseRequestValidation.MaxPoolLength);
        entity.Property(x => x.TaskId).HasMaxLength(LeaseRequestValidation.MaxTaskIdLength);
        entity.Property(x => x.ResponseAddress).HasMaxLength(512);
        entity.Property(x => x.WorkerAddress).HasMaxLength(256);
        entity.Property(x => x.WorkerThumbprint).HasMaxLength(64);
        entity.Property(x => x.RejectReason).HasMaxLength(32);
        entity.Property(x => x.RejectDetail).HasMaxLength(1024);
        entity.Property(x => x.RevokeReason).HasMaxLength(32);
        entity.HasIndex(x => new { x.Pool, x.CurrentState });
    }
}

sealed class WorkerMapping : IEntityTypeConfiguration<WorkerState>
{
    public void Configure(EntityTypeBuilder<WorkerState> entity)
    {
        entity.MapSaga("workers");
        entity.Property(x => x.CurrentState).HasMaxLength(64);
        entity.Property(x => x.Pool).HasMaxLength(64);
        entity.Property(x => x.Address).HasMaxLength(256);
        entity.Property(x => x.AgentThumbprint).HasMaxLength(64);
        entity.Property(x => x.TrustedInstanceId).HasMaxLength(LeaseRequestValidation.MaxInstanceIdLength);
        entity.Property(x => x.TrustedThumbprint).HasMaxLength(64);
        entity.Property(x => x.ReapReason).HasMaxLength(32);
        entity.Ignore(x => x.MaxAgeMoved);
        entity.Ignore(x => x.IdleTimerMoved);
        entity.HasIndex(x => new { x.Pool, x.CurrentState });
        entity.HasIndex(x => x.TrustedInstanceId);
    }
}

sealed class PoolMapping : IEntityTypeConfiguration<PoolState>
{
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public void Configure(EntityTypeBuilder<PoolState> entity)
    {
        entity.MapSaga("pools");
        entity.Property(x => x.CurrentState).HasMaxLength(64);
        entity.Property(x => x.Name).HasMaxLength(64);
        entity.HasIndex(x => x.Name).IsUnique();
        // The ledger is one JSON document: it is only ever read and written whole, by the pool saga, which changes it
        // in place on nearly every message and bumps the version on every save anyway. So it counts as changed on every
        // save: one serialization, instead of a JSON copy on every load and two more serializations to compare (the pool
        // saga runs one message at a time, so this was on its critical path; see the README's Benchmark section).
        entity.Property(x => x.Book).HasConversion(
            book => JsonSerializer.Serialize(book, Json),
            json => JsonSerializer.Deserialize<PoolBook>(json, Json) ?? new PoolBook(),
            new ValueComparer<PoolBook>(
                (_, _) => false,
                book => RuntimeHelpers.GetHashCode(book),
                book => book));
    }
}

sealed class InstanceLifecycleMapping : IEntityTypeConfiguration<InstanceLifecycle>
{
    public void Configure(EntityTypeBuilder<InstanceLifecycle> entity)
    {
        entity.ToTable("instance_lifecycles").HasKey(x => x.InstanceId);
        entity.Property(x => x.InstanceId).HasMaxLength(LeaseRequestValidation.MaxInstanceIdLength);
    }
}
