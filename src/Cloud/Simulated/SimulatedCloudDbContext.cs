using DynamicWorkers.Infrastructure.Configuration;
using DynamicWorkers.Infrastructure.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.Cloud.Simulated;

/// <summary>
/// A simulated VM. Kept in the shared database so every process (and any test or operator) sees the same cloud.
/// </summary>
public sealed class SimulatedVm
{
    public Guid WorkerId { get; set; }
    public string Pool { get; set; } = "";
    public string Image { get; set; } = "";
    public string Size { get; set; } = "";
    public string Address { get; set; } = "";
    public string AgentThumbprint { get; set; } = "";
    public string? TrustedInstanceId { get; set; }
    public string? TrustedThumbprint { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset? ReadyAt { get; set; }
    public DateTimeOffset? DeletedAt { get; set; }

    /// <summary>
    /// When a test or an operator declared the VM dead (<see cref="SimulatedCloud.MarkDeadAsync"/>): it exists but no
    /// longer runs.
    /// </summary>
    public DateTimeOffset? DeadAt { get; set; }
}

/// <summary>
/// Append-only: one row per trust command that reached the cloud, written before it is judged, so a checker sees
/// a second instance's attempt even when the cloud refused it.
/// </summary>
public sealed class SimulatedVmTrust
{
    public const string Trusted = nameof(Trusted);

    public long Id { get; set; }
    public Guid WorkerId { get; set; }
    public string InstanceId { get; set; } = "";
    public string Thumbprint { get; set; } = "";
    public DateTimeOffset At { get; set; }

    /// <summary><see cref="Trusted"/>, the reason the cloud refused, or null while (or if never) answered.</summary>
    public string? Outcome { get; set; }
}

/// <summary>
/// The simulated cloud's own tables, separate from the product's context (no migrations: the schema is
/// created at start when missing, see <see cref="SimulatedCloud.EnsureSchemaAsync"/>).
/// </summary>
public sealed class SimulatedCloudDbContext(DbContextOptions<SimulatedCloudDbContext> options) : DbContext(options)
{
    public DbSet<SimulatedVm> Vms => Set<SimulatedVm>();
    public DbSet<SimulatedVmTrust> Trusts => Set<SimulatedVmTrust>();

    public static DbContextOptions<SimulatedCloudDbContext> CreateOptions(DatabaseOptions database,
        ILoggerFactory? logging = null)
    {
        var builder = new DbContextOptionsBuilder<SimulatedCloudDbContext>();
        builder.UseDynamicWorkersDatabase(database, logging);
        return builder.Options;
    }

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<SimulatedVm>(vm =>
        {
            vm.ToTable("simulated_vms");
            vm.HasKey(v => v.WorkerId);
            vm.Property(v => v.WorkerId).ValueGeneratedNever();
            vm.Property(v => v.Pool).HasMaxLength(100);
            vm.Property(v => v.Image).HasMaxLength(400);
            vm.Property(v => v.Size).HasMaxLength(100);
            vm.Property(v => v.Address).HasMaxLength(100);
            vm.Property(v => v.AgentThumbprint).HasMaxLength(64);
            vm.Property(v => v.TrustedInstanceId).HasMaxLength(200);
            vm.Property(v => v.TrustedThumbprint).HasMaxLength(64);
        });
        modelBuilder.Entity<SimulatedVmTrust>(trust =>
        {
            trust.ToTable("simulated_vm_trusts");
            trust.HasKey(t => t.Id);
            trust.Property(t => t.InstanceId).HasMaxLength(200);
            trust.Property(t => t.Thumbprint).HasMaxLength(64);
            trust.Property(t => t.Outcome).HasMaxLength(100);
            trust.HasIndex(t => t.WorkerId);
        });
    }
}
