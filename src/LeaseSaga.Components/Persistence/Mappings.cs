using DynamicWorkers.Infrastructure.Persistence;
using DynamicWorkers.LeaseSaga.Configuration;
using DynamicWorkers.LeaseSaga.Instances;
using DynamicWorkers.LeaseSaga.Leases;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using Microsoft.EntityFrameworkCore;
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
        entity.Ignore(x => x.Outcome);
        entity.HasIndex(x => new { x.Pool, x.CurrentState, x.ReceivedAt });
        // Fair share counts one instance's open leases in one pool on every request.
        entity.HasIndex(x => new { x.InstanceId, x.Pool, x.CurrentState });
        // The sweep reads the waiting leases of every pool; the API lists open leases, then the latest ended; retention
        // deletes the oldest.
        entity.HasIndex(x => new { x.CurrentState, x.ReceivedAt });
        entity.HasIndex(x => x.EndedAt);
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
        entity.Property(x => x.Image).HasMaxLength(PoolOptions.MaxImageLength);
        // The pool keeper counts workers per state and image under the pool's lock: from the index alone.
        entity.HasIndex(x => new { x.Pool, x.CurrentState, x.Image });
        entity.HasIndex(x => new { x.TrustedInstanceId, x.Pool, x.CurrentState });
        entity.HasIndex(x => new { x.CurrentState, x.TimerDueAt });
    }
}

sealed class PoolMapping : IEntityTypeConfiguration<PoolState>
{
    public void Configure(EntityTypeBuilder<PoolState> entity)
    {
        entity.ToTable("pools").HasKey(x => x.Name);
        entity.Property(x => x.Name).HasMaxLength(64);
        entity.Property(x => x.Image).HasMaxLength(PoolOptions.MaxImageLength);
        entity.Property(x => x.ConfiguredImage).HasMaxLength(PoolOptions.MaxImageLength);
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
