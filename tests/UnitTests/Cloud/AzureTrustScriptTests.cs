using Azure.ResourceManager.Compute.Models;
using DynamicWorkers.Cloud;
using DynamicWorkers.Cloud.Azure;

namespace DynamicWorkers.UnitTests.Cloud;

/// <summary>The trust script's input and output, and the image reference, without any ARM call.</summary>
public sealed class AzureTrustScriptTests
{
    const string Agent = "0123456789ABCDEF0123456789ABCDEF01234567";

    [Fact]
    public void The_agent_thumbprint_is_the_last_hex_word_of_linux_stdout_never_of_stderr()
    {
        var statuses = new[]
        {
            Status("ProvisioningState/succeeded", $"Enable succeeded: \n[stdout]\nTrusting {new string('A', 40)}\nThe "
                + $"thumbprint of this Tentacle is: {Agent.ToLowerInvariant()}\n\n[stderr]\n{new string('F', 40)}\n"),
        };

        Assert.Equal(Agent, TrustScript.AgentThumbprint(statuses));
        Assert.Equal(new string('F', 40), TrustScript.StdErr(statuses));
    }

    [Fact]
    public void The_agent_thumbprint_is_read_from_the_windows_stdout_status()
    {
        var statuses = new[]
        {
            Status("ComponentStatus/StdOut/succeeded", $"The thumbprint of this Tentacle is: {Agent}"),
            Status("ComponentStatus/StdErr/succeeded", new string('E', 64)),
        };

        Assert.Equal(Agent, TrustScript.AgentThumbprint(statuses));
    }

    [Fact]
    public void No_hex_word_in_stdout_means_no_thumbprint()
    {
        Assert.Null(TrustScript.AgentThumbprint([
            Status("ProvisioningState/succeeded", "Enable succeeded: \n[stdout]\n\n[stderr]\nTentacle: not found\n")]));
        Assert.Null(TrustScript.AgentThumbprint(
            [Status("ProvisioningState/succeeded", $"[stdout]\n{new string('A', 39)} {new string('B', 41)}\n")]));
    }

    [Fact]
    public void The_default_scripts_name_the_thumbprint_once_in_upper_case_and_keep_no_placeholder()
    {
        var linux = TrustScript.Build(WorkerOsType.Linux, null, new string('c', 64));
        var windows = TrustScript.Build(WorkerOsType.Windows, null, new string('c', 40));

        Assert.Equal("RunShellScript", linux.CommandId);
        Assert.Equal("RunPowerShellScript", windows.CommandId);
        Assert.Single(linux.Script, l => l.Contains(new string('C', 64), StringComparison.Ordinal));
        Assert.Single(windows.Script, l => l.Contains(new string('C', 40), StringComparison.Ordinal));
        Assert.DoesNotContain(linux.Script.Concat(windows.Script),
            l => l.Contains(TrustScript.Placeholder, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("Canonical:ubuntu-24_04-lts:server:latest", "Canonical", null)]
    [InlineData(
        "/subscriptions/x/resourceGroups/g/providers/Microsoft.Compute/galleries/dw/images/ubuntu/versions/1.0.0", null,
        "/subscriptions/x/resourceGroups/g/providers/Microsoft.Compute/galleries/dw/images/ubuntu/versions/1.0.0")]
    public void An_image_is_a_marketplace_reference_or_a_gallery_id(string image, string? publisher, string? id)
    {
        var reference = AzureWorkerCloud.ParseImage(image);

        Assert.Equal(publisher, reference.Publisher);
        Assert.Equal(id, reference.Id?.ToString());
    }

    [Theory]
    [InlineData("ubuntu-22.04")]
    [InlineData("Canonical:ubuntu::latest")]
    [InlineData("a:b:c:d:e")]
    public void Anything_else_is_an_invalid_image(string image)
    {
        Assert.Equal(AzureWorkerCloud.InvalidImage,
            Assert.Throws<WorkerCloudException>(() => AzureWorkerCloud.ParseImage(image)).Reason);
    }

    static InstanceViewStatus Status(string code, string message)
        => new() { Code = code, Message = message };
}
