using System.ComponentModel.DataAnnotations;

namespace DynamicWorkers.Cloud.Simulated;

/// <summary>Section <c>Cloud:Simulated</c>: how slow and how unreliable the local cloud pretends to be.</summary>
public sealed class SimulatedCloudOptions
{
    public const string Section = "Cloud:Simulated";

    /// <summary>From the create call until the VM runs.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan ProvisionDelay { get; set; } = TimeSpan.FromSeconds(5);

    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan TrustDelay { get; set; } = TimeSpan.FromSeconds(1);

    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan DeleteDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Share of VMs that fail to start (0 = none, 1 = all).</summary>
    [Range(0.0, 1.0)]
    public double ProvisionFailureRate { get; set; }

    /// <summary>Share of trust commands that fail.</summary>
    [Range(0.0, 1.0)]
    public double TrustFailureRate { get; set; }
}
