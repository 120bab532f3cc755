using System.ComponentModel.DataAnnotations;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.LeaseSaga.Configuration;

/// <summary>
/// One pool: <c>Pools:&lt;name&gt;:*</c>. Sizes are start-up values; <c>SetPoolSize</c> changes them at run time.
/// </summary>
public sealed class PoolOptions
{
    /// <summary>The largest sizes configuration or <c>SetPoolSize</c> may ask for; a pool may be all hot.</summary>
    public const int HotTargetLimit = 10000, MaxWorkersLimit = 10000;

    /// <summary>Workers kept provisioned, ready and trusting no one.</summary>
    [Range(0, HotTargetLimit)]
    public int HotTarget { get; set; } = 2;

    /// <summary>Live workers of the pool, whatever their state, never exceed this.</summary>
    [Range(1, MaxWorkersLimit)]
    public int MaxWorkers { get; set; } = 10;

    /// <summary>The longest image reference stored (a gallery image id is a resource path).</summary>
    public const int MaxImageLength = 512;

    /// <summary>
    /// Marketplace reference (publisher:offer:sku:version) or gallery image id; a change at start rolls the pool out.
    /// </summary>
    [Required(AllowEmptyStrings = false)]
    [MaxLength(MaxImageLength)]
    public string Image { get; set; } = "";

    /// <summary>
    /// Image rollout: new-image workers started beyond the hot target while hot workers of an older image remain (and,
    /// at <c>MaxWorkers</c>, old hot workers retired at a time to make room for their replacements).
    /// </summary>
    [Range(1, 100)]
    public int RolloutSurge { get; set; } = 2;

    [Required(AllowEmptyStrings = false)]
    public string Size { get; set; } = "Standard_D2s_v5";

    /// <summary>The tool baseline the image carries, shown in pool status.</summary>
    public List<string> Tools { get; set; } = [];

    /// <summary>A lease still without a worker after this gets <c>NoCapacity</c>.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan AllocationTimeout { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>
    /// Leases that may wait in line at once; one more that no idle worker of its instance can serve at once gets
    /// <c>NoCapacity</c> straight away. Bounds the waiting line in a flood.
    /// </summary>
    [Range(1, 100000)]
    public int MaxWaiting { get; set; } = 1000;

    /// <summary>
    /// Fair share: open leases (granted, being granted or waiting) one instance may have in the pool; one more gets
    /// <c>InstanceLimit</c>. Set it below <c>MaxWorkers</c> in a shared pool so other instances always find room.
    /// </summary>
    [Range(1, 100000)]
    public int MaxLeasesPerInstance { get; set; } = 100;

    /// <summary>
    /// Fair share: leases one instance may have waiting in the pool's line; one more that would wait gets
    /// <c>InstanceLimit</c>, so one instance's flood never fills the line other instances join. At most
    /// <c>MaxWaiting</c>.
    /// </summary>
    [Range(1, 100000)]
    public int MaxWaitingPerInstance { get; set; } = 50;

    /// <summary>A hot target chosen from demand instead of <see cref="HotTarget"/>.</summary>
    public AdaptiveHotTargetOptions Adaptive { get; set; } = new();
}

/// <summary>
/// <c>Pools:&lt;name&gt;:Adaptive:*</c>: the hot target follows demand (see <c>HotTargetModel</c>), re-evaluated every
/// minute.
/// </summary>
public sealed class AdaptiveHotTargetOptions
{
    public bool Enabled { get; set; }

    /// <summary>The hot target never goes below this, however quiet the pool.</summary>
    [Range(0, PoolOptions.HotTargetLimit)]
    public int MinHot { get; set; }

    /// <summary>
    /// The hot target never goes above this (nor above the pool's <c>MaxWorkers</c>), however busy the pool.
    /// </summary>
    [Range(0, PoolOptions.HotTargetLimit)]
    public int MaxHot { get; set; } = 50;

    /// <summary>The chance a lease that re-use cannot serve finds no hot worker and waits for a VM.</summary>
    [Range(0.0001, 0.5)]
    public double TargetWaitProbability { get; set; } = 0.05;

    /// <summary>The arrival rate is the leases re-use could not serve over this last stretch of time.</summary>
    [Range(typeof(TimeSpan), "00:01:00", "1.00:00:00")]
    public TimeSpan DemandWindow { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>The provisioning time assumed until the pool has provisioned a worker.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan InitialProvisioningTime { get; set; } = TimeSpan.FromMinutes(10);
}

/// <summary>Section <c>Pools</c>: pool name → definition.</summary>
public sealed partial class PoolsOptions
{
    public const string Section = "Pools";

    public Dictionary<string, PoolOptions> Pools { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    [GeneratedRegex("^[a-z0-9][a-z0-9.-]{0,62}$")]
    public static partial Regex ValidName();
}

public sealed class PoolsOptionsValidator : IValidateOptions<PoolsOptions>
{
    public ValidateOptionsResult Validate(string? name, PoolsOptions options)
    {
        var failures = new List<string>();
        if (options.Pools.Count == 0)
        {
            failures.Add("Pools: at least one pool must be configured");
        }

        foreach (var (pool, definition) in options.Pools)
        {
            if (!PoolsOptions.ValidName().IsMatch(pool))
            {
                failures.Add($"Pools:{pool}: a pool name is lower-case letters, digits, '.' and '-'");
            }

            var results = new List<ValidationResult>();
            Validator.TryValidateObject(definition, new ValidationContext(definition), results,
                validateAllProperties: true);
            failures.AddRange(results.Select(r => $"Pools:{pool}:{string.Join(",", r.MemberNames)}: {r.ErrorMessage}"));
            if (definition.HotTarget > definition.MaxWorkers)
            {
                failures.Add(
                    $"Pools:{pool}: HotTarget ({definition.HotTarget}) exceeds MaxWorkers ({definition.MaxWorkers})");
            }

            var adaptive = new List<ValidationResult>();
            Validator.TryValidateObject(definition.Adaptive, new ValidationContext(definition.Adaptive), adaptive,
                validateAllProperties: true);
            failures.AddRange(adaptive.Select(
                r => $"Pools:{pool}:Adaptive:{string.Join(",", r.MemberNames)}: {r.ErrorMessage}"));
            if (definition.Adaptive.MinHot > definition.Adaptive.MaxHot)
            {
                failures.Add($"Pools:{pool}:Adaptive: MinHot ({definition.Adaptive.MinHot}) "
                             + $"exceeds MaxHot ({definition.Adaptive.MaxHot})");
            }

            if (definition.MaxWaitingPerInstance > definition.MaxWaiting)
            {
                failures.Add($"Pools:{pool}: MaxWaitingPerInstance ({definition.MaxWaitingPerInstance}) "
                             + $"exceeds MaxWaiting ({definition.MaxWaiting}): one instance could fill the line alone");
            }
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

/// <summary>
/// Section <c>Lifecycle</c>: defaults that <c>SetInstanceLifecycle</c> overrides per instance, and the cloud timeouts.
/// </summary>
public sealed class LifecycleOptions
{
    public const string Section = "Lifecycle";

    /// <summary>An idle worker is deprovisioned this long after its last lease ended.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "365.00:00:00")]
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(60);

    /// <summary>
    /// A worker is deprovisioned this long after it was provisioned, even if leased (the lease is revoked).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "365.00:00:00")]
    public TimeSpan MaxWorkerAge { get; set; } = TimeSpan.FromHours(72);

    /// <summary>A lease never released is revoked, and its worker deprovisioned, after this.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "365.00:00:00")]
    public TimeSpan MaxLeaseDuration { get; set; } = TimeSpan.FromHours(24);

    /// <summary>A VM not running after this is given up and replaced.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan ProvisioningTimeout { get; set; } = TimeSpan.FromMinutes(30);

    /// <summary>A worker that has not confirmed trust after this is given up and replaced.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan TrustTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// A worker whose VM is still not confirmed deleted after this has its delete asked for again (by the sweep).
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan DeprovisioningTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// An idle worker idle longer than this has its VM checked through the cloud before it is leased again (zero: every
    /// time). Each check is one ARM read against the subscription's read limit, and a worker released minutes ago was
    /// just in use.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:00", "365.00:00:00")]
    public TimeSpan HealthCheckAfterIdle { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>A health check not answered within this counts as unknown: the worker is leased anyway.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:05:00")]
    public TimeSpan HealthCheckTimeout { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>Section <c>Retention</c>: how long finished rows are kept.</summary>
public sealed class RetentionOptions
{
    public const string Section = "Retention";

    /// <summary>
    /// Released, revoked and rejected leases are deleted this long after they ended (a repeat of the request is then a
    /// new lease).
    /// </summary>
    [Range(typeof(TimeSpan), "01:00:00", "3650.00:00:00")]
    public TimeSpan EndedLeases { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How often the ended leases past retention are deleted.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan PurgeInterval { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Rows deleted per statement, so no delete holds its locks for long.</summary>
    [Range(1, 100_000)]
    public int PurgeBatch { get; set; } = 1000;
}
