using System.Diagnostics;
using System.Text.Json.Nodes;
using DynamicWorkers.ArmEmulator;
using DynamicWorkers.Cloud;
using DynamicWorkers.Cloud.Azure;
using DynamicWorkers.IntegrationTests.Support;
using global::Azure.ResourceManager.Resources;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.IntegrationTests.Cloud;

/// <summary>
/// The Azure adapter through the real Azure SDK (Azure.ResourceManager.Compute 1.2.0) against the project's ARM
/// emulator over HTTPS on loopback: what the SDK sends, how it polls and retries, and how failures come back.
/// </summary>
public sealed class AzureCloudTests : IClassFixture<ArmEmulatorFixture>
{
    const string Ubuntu = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest";
    const string Windows = "MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition:latest";

    readonly ArmEmulatorFixture _emulator;

    public AzureCloudTests(ArmEmulatorFixture emulator)
    {
        _emulator = emulator;
        Server.Faults.Reset();
        Server.ClearRequests();
    }

    ArmEmulatorServer Server => _emulator.Server;

    [Fact]
    public async Task Create_sends_image_size_subnet_tags_and_both_delete_options_polls_to_the_end_and_reads_the_private_address()
    {
        var cloud = _emulator.CreateCloud();
        var workerId = Guid.NewGuid();

        var vm = await cloud.CreateAsync(workerId, new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
            CancellationToken.None);

        var put = Assert.Single(ArmRequests("PUT"));
        Assert.EndsWith($"/virtualMachines/{AzureWorkerCloud.VmName(workerId)}", put.Path,
            StringComparison.OrdinalIgnoreCase);
        var body = JsonNode.Parse(put.Body)!;
        var properties = body["properties"]!;
        Assert.Equal("westeurope", (string?)body["location"]);
        Assert.Equal("Standard_D2s_v5", (string?)properties["hardwareProfile"]!["vmSize"]);
        var image = properties["storageProfile"]!["imageReference"]!;
        Assert.Equal(
            ("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "latest"),
            ((string?)image["publisher"], (string?)image["offer"], (string?)image["sku"], (string?)image["version"]));
        Assert.Equal("Delete", (string?)properties["storageProfile"]!["osDisk"]!["deleteOption"]);
        var nic = properties["networkProfile"]!["networkInterfaceConfigurations"]![0]!;
        Assert.Equal("Delete", (string?)nic["properties"]!["deleteOption"]);
        Assert.Equal(ArmEmulatorFixture.SubnetId,
            (string?)nic["properties"]!["ipConfigurations"]![0]!["properties"]!["subnet"]!["id"]);
        var tags = body["tags"]!.AsObject();
        Assert.Equal("dynamic-workers", (string?)tags["dw-managed-by"]);
        Assert.Equal(workerId.ToString(), (string?)tags["dw-worker-id"]);
        Assert.Equal("ubuntu-22.04", (string?)tags["dw-pool"]);
        Assert.True(DateTimeOffset.TryParse((string?)tags["dw-created-at"], out var createdAt)
            && createdAt > DateTimeOffset.UtcNow.AddMinutes(-1));

        // The SDK followed the Azure-AsyncOperation header to the end, then read the VM and its NIC.
        Assert.Contains(ArmRequests("GET"),
            r => r.Path.Contains("/operations/", StringComparison.OrdinalIgnoreCase) && r.Status == 200);
        Assert.Contains(ArmRequests("GET"), r => r.Path.Contains("/networkInterfaces/",
            StringComparison.OrdinalIgnoreCase) && r.Query.Contains("api-version=2023-04-01"));
        var emulated = Assert.Single(Server.State.Vms, v => v.WorkerId == workerId);
        Assert.Equal("Succeeded", emulated.ProvisioningState);
        Assert.Equal($"{emulated.PrivateIp}:10933", vm.Address);
        Assert.Equal(("ubuntu-22.04", false), (vm.Pool, vm.Provisioning));
    }

    [Fact]
    public async Task A_redelivered_create_finds_the_vm_it_already_started_and_delete_leaves_nothing_behind()
    {
        var cloud = _emulator.CreateCloud();
        var workerId = Guid.NewGuid();
        var spec = new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5");
        var nicsBefore = Server.State.NetworkInterfaceCount;

        var first = await cloud.CreateAsync(workerId, spec, CancellationToken.None);
        var again = await cloud.CreateAsync(workerId, spec, CancellationToken.None);

        Assert.Single(ArmRequests("PUT"));
        Assert.Equal(first.Address, again.Address);
        Assert.Single(Server.State.AllVms, v => v.WorkerId == workerId);
        Assert.Equal(nicsBefore + 1, Server.State.NetworkInterfaceCount);

        await cloud.DeleteAsync(workerId, CancellationToken.None);

        Assert.DoesNotContain(Server.State.Vms, v => v.WorkerId == workerId);
        Assert.Equal(nicsBefore, Server.State.NetworkInterfaceCount);
        Assert.DoesNotContain(await cloud.ListAsync(CancellationToken.None), v => v.WorkerId == workerId);
    }

    [Fact]
    public async Task A_create_still_in_progress_is_polled_until_it_finishes()
    {
        var cloud = _emulator.CreateCloud();
        var workerId = Guid.NewGuid();
        Server.Faults.CreateDuration = TimeSpan.FromSeconds(1.5);

        var vm = await cloud.CreateAsync(workerId, new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
            CancellationToken.None);

        var put = Assert.Single(ArmRequests("PUT"));
        var polls =
            ArmRequests("GET").Where(r => r.Path.Contains("/operations/", StringComparison.OrdinalIgnoreCase)).ToList();
        Assert.True(polls.Count > 1, $"{polls.Count} poll(s) of the async operation");
        // Polled while the VM was still Creating, and again once it had finished.
        Assert.Contains(polls, p => p.At < put.At + Server.Faults.CreateDuration);
        // (The emulator starts the clock while it handles the PUT, between that request's ReceivedAt and At.)
        Assert.Contains(polls, p => p.At >= put.ReceivedAt + Server.Faults.CreateDuration);
        Assert.Equal("Succeeded", Server.State.Vms.Single(v => v.WorkerId == workerId).ProvisioningState);
        Assert.False(vm.Provisioning);
        Assert.EndsWith(":10933", vm.Address, StringComparison.Ordinal);
    }

    [Fact]
    public async Task No_more_vm_puts_are_in_flight_at_once_than_MaxConcurrentCreates()
    {
        const int cap = 2;
        var cloud = _emulator.CreateCloud(
            new Dictionary<string, string?> { ["Cloud:Azure:MaxConcurrentCreates"] = cap.ToString() });
        // PUTs wait for each other in groups of the cap, so creates let through together overlap even on a busy
        // machine; every answer takes a while, so one let through beyond the cap overlaps them too.
        Server.Faults.VmPutsMeetInGroupsOf = cap;
        Server.Faults.Latency = TimeSpan.FromMilliseconds(300);

        await Task.WhenAll(Enumerable.Range(0, 3 * cap).Select(_ =>
            cloud.CreateAsync(Guid.NewGuid(), new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
                CancellationToken.None)));

        var puts = ArmRequests("PUT");
        Assert.Equal(3 * cap, puts.Count);
        var inFlight = puts.Max(p => puts.Count(o => o.ReceivedAt <= p.ReceivedAt && p.ReceivedAt < o.At));
        Assert.Equal(cap, inFlight);
    }

    [Fact]
    public async Task A_gallery_image_id_is_sent_as_the_image_reference_id()
    {
        var cloud = _emulator.CreateCloud();
        var gallery = $"/subscriptions/{ArmEmulatorFixture.SubscriptionId}/resourceGroups/images/providers"
            + $"/Microsoft.Compute/galleries/dw/images/ubuntu-tools/versions/1.0.3";

        await cloud.CreateAsync(Guid.NewGuid(), new VmSpec("ubuntu-tools", gallery, "Standard_D4s_v5"),
            CancellationToken.None);

        var image = JsonNode.Parse(Assert.Single(ArmRequests("PUT")).Body)!["properties"]!["storageProfile"]![
            "imageReference"]!;
        Assert.Equal(gallery, (string?)image["id"], StringComparer.OrdinalIgnoreCase);
        Assert.Null(image["publisher"]);
    }

    [Fact]
    public async Task A_429_is_retried_after_its_Retry_After()
    {
        // The SDK's own back-off is cut to 50 ms: a retry 2 s later can only come from the Retry-After header.
        var cloud =
            _emulator.CreateCloud(new Dictionary<string, string?> { ["Cloud:Azure:RetryDelay"] = "00:00:00.050" });
        Server.Faults.Inject("PUT", "/virtualMachines/", 429, count: 1, retryAfterSeconds: 2);

        await cloud.CreateAsync(Guid.NewGuid(), new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
            CancellationToken.None);

        var puts = ArmRequests("PUT");
        Assert.Equal([429, 201], puts.Select(p => p.Status));
        var pause = puts[1].At - puts[0].At;
        // The first timestamp is taken before the 429 is sent, so the pause measured includes the whole Retry-After,
        // less the few milliseconds a timer may fire early by the wall clock (a clean-clone run measured 1.998 s).
        // Anything near 2 s is still 40 times the SDK's own 50 ms back-off.
        Assert.True(pause >= TimeSpan.FromSeconds(1.9) && pause < TimeSpan.FromSeconds(5),
            $"retried after {pause.TotalSeconds:0.000} s");
    }

    [Fact]
    public async Task A_500_that_outlasts_the_retries_fails_cleanly_with_the_arm_error_code_and_no_vm()
    {
        var cloud = _emulator.CreateCloud(new Dictionary<string, string?> { ["Cloud:Azure:MaxRetries"] = "2",
            ["Cloud:Azure:RetryDelay"] = "00:00:00.050" });
        var workerId = Guid.NewGuid();
        Server.Faults.Inject("PUT", "/virtualMachines/", 500, count: 10);

        var failure = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.CreateAsync(workerId, new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
                CancellationToken.None));

        Assert.Equal("InternalServerError", failure.Reason);
        Assert.Equal(3, ArmRequests("PUT").Count);
        Assert.DoesNotContain(Server.State.AllVms, v => v.WorkerId == workerId);
    }

    [Fact]
    public async Task A_create_that_ends_failed_reports_the_arm_error_code()
    {
        var cloud = _emulator.CreateCloud();
        Server.Faults.CreateFailureCode = "AllocationFailed";

        var failure = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.CreateAsync(Guid.NewGuid(), new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
                CancellationToken.None));

        Assert.Equal("AllocationFailed", failure.Reason);
    }

    [Fact]
    public async Task A_vm_that_never_finishes_is_given_up_after_the_create_timeout_and_counts_as_provisioning()
    {
        var cloud =
            _emulator.CreateCloud(new Dictionary<string, string?> { ["Cloud:Azure:CreateTimeout"] = "00:00:03" });
        var workerId = Guid.NewGuid();
        Server.Faults.CreatesNeverFinish = true;
        var clock = Stopwatch.StartNew();

        var failure = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.CreateAsync(workerId, new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
                CancellationToken.None));

        Assert.Equal(AzureWorkerCloud.ProvisioningTimedOut, failure.Reason);
        // Timers may fire a millisecond early against the stopwatch: the bound allows for it.
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(2.9), TimeSpan.FromSeconds(15));
        Assert.True((await cloud.ListAsync(CancellationToken.None)).Single(v => v.WorkerId == workerId).Provisioning);

        // Deleting it still works (the reaper's path for a worker whose provisioning timed out).
        await cloud.DeleteAsync(workerId, CancellationToken.None);
        Assert.DoesNotContain(Server.State.Vms, v => v.WorkerId == workerId);
    }

    [Fact]
    public async Task Latency_slows_every_call_but_changes_no_outcome()
    {
        var cloud = _emulator.CreateCloud();
        Server.Faults.Latency = TimeSpan.FromMilliseconds(300);
        var clock = Stopwatch.StartNew();

        await cloud.CreateAsync(Guid.NewGuid(), new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
            CancellationToken.None);

        // A timer may fire a millisecond or two early, so each call is allowed 290 ms of its 300.
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(290) * ArmRequests().Count,
            $"{ArmRequests().Count} calls in {clock.Elapsed}");
    }

    [Theory]
    [InlineData("ubuntu-22.04", Ubuntu, "RunShellScript")]
    [InlineData("windows-2022", Windows, "RunPowerShellScript")]
    public async Task Trust_runs_the_pool_script_with_the_thumbprint_and_returns_the_agent_thumbprint_it_printed(
        string pool, string image, string commandId)
    {
        var cloud = _emulator.CreateCloud();
        var workerId = Guid.NewGuid();
        await cloud.CreateAsync(workerId, new VmSpec(pool, image, "Standard_D2s_v5"), CancellationToken.None);
        var thumbprint = new string('a', 40);

        var agentThumbprint = await cloud.TrustAsync(workerId, "instance-1", thumbprint, CancellationToken.None);

        var emulated = Server.State.Vms.Single(v => v.WorkerId == workerId);
        Assert.Equal(emulated.AgentThumbprint, agentThumbprint);
        Assert.Equal([thumbprint.ToUpperInvariant()], emulated.TrustedThumbprints);
        var command = Assert.Single(Server.State.RunCommands, c => c.WorkerId == workerId);
        Assert.Equal(commandId, command.CommandId);
        Assert.Contains(command.Script, line => line.Contains("--reset-trust", StringComparison.Ordinal));
        Assert.Contains(command.Script,
            line => line.Contains($"--trust {thumbprint.ToUpperInvariant()}", StringComparison.Ordinal)
                                                || line.Contains($"--trust '{thumbprint.ToUpperInvariant()}'",
                                                    StringComparison.Ordinal));
        Assert.DoesNotContain(command.Script, line => line.Contains("{thumbprint}", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_vm_records_whom_it_trusts_in_tags_and_refuses_a_second_instance_before_running_anything()
    {
        var cloud = _emulator.CreateCloud();
        var workerId = Guid.NewGuid();
        await cloud.CreateAsync(workerId, new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
            CancellationToken.None);
        var thumbprint = new string('e', 40);

        var first = await cloud.TrustAsync(workerId, "instance-1", thumbprint, CancellationToken.None);
        var again =
            await cloud.TrustAsync(workerId, "instance-1", thumbprint.ToUpperInvariant(), CancellationToken.None);
        var other = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.TrustAsync(workerId, "instance-2", new string('f', 40), CancellationToken.None));
        var otherThumbprint = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.TrustAsync(workerId, "instance-1", new string('f', 40), CancellationToken.None));

        Assert.Equal(first, again);
        Assert.Equal(AzureWorkerCloud.AlreadyTrustsAnotherInstance, other.Reason);
        Assert.Equal(AzureWorkerCloud.AlreadyTrustsAnotherInstance, otherThumbprint.Reason);
        var emulated = Server.State.Vms.Single(v => v.WorkerId == workerId);
        Assert.Equal("instance-1", emulated.Tags["dw-trusted-instance"]);
        Assert.Equal(thumbprint.ToUpperInvariant(), emulated.Tags["dw-trusted-thumbprint"]);
        Assert.Equal("dynamic-workers", emulated.Tags["dw-managed-by"]);
        Assert.Equal([thumbprint.ToUpperInvariant()], emulated.TrustedThumbprints.Distinct());
        Assert.Equal(2, Server.State.RunCommands.Count(c => c.WorkerId == workerId));
        Assert.Single(ArmRequests("PATCH"));
        Assert.Equal("instance-1",
            (await cloud.ListAsync(CancellationToken.None)).Single(v => v.WorkerId == workerId).TrustedInstanceId);
    }

    [Fact]
    public async Task A_pool_can_bring_its_own_trust_script()
    {
        var cloud = _emulator.CreateCloud(new Dictionary<string, string?>
        {
            ["Cloud:Azure:Pools:custom:TrustScript"] = "/opt/agent/trust --only {thumbprint}\n/opt/agent/whoami",
        });
        var workerId = Guid.NewGuid();
        await cloud.CreateAsync(workerId, new VmSpec("custom", Ubuntu, "Standard_D2s_v5"), CancellationToken.None);
        var thumbprint = new string('b', 64);

        await cloud.TrustAsync(workerId, "instance-1", thumbprint, CancellationToken.None);

        var command = Assert.Single(Server.State.RunCommands, c => c.WorkerId == workerId);
        Assert.Equal([$"/opt/agent/trust --only {thumbprint.ToUpperInvariant()}", "/opt/agent/whoami"], command.Script);
    }

    [Theory]
    [InlineData("abc; rm -rf /")]
    [InlineData("$(reboot)")]
    [InlineData("`id`")]
    [InlineData("'; Remove-Item -Recurse C:\\ ; '")]
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; ls")]
    [InlineData("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$")]
    [InlineData("")]
    public async Task A_thumbprint_with_shell_or_powershell_metacharacters_is_rejected_before_any_call(
        string thumbprint)
    {
        var cloud = _emulator.CreateCloud();

        var failure = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.TrustAsync(Guid.NewGuid(), "instance-evil", thumbprint, CancellationToken.None));

        Assert.Equal(AzureWorkerCloud.InvalidThumbprint, failure.Reason);
        Assert.Empty(Server.Requests);
        Assert.Throws<ArgumentException>(() => TrustScript.Build(WorkerOsType.Linux, null, thumbprint));
    }

    [Fact]
    public async Task A_trust_script_that_prints_no_thumbprint_is_a_trust_failure()
    {
        var cloud = _emulator.CreateCloud();
        var workerId = Guid.NewGuid();
        await cloud.CreateAsync(workerId, new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
            CancellationToken.None);
        Server.Faults.TrustScriptsFail = true;

        var failure = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.TrustAsync(workerId, "instance-1", new string('c', 40), CancellationToken.None));

        Assert.Equal(AzureWorkerCloud.NoAgentThumbprint, failure.Reason);
    }

    [Fact]
    public async Task Trusting_a_missing_vm_is_refused_with_the_reason()
    {
        var cloud = _emulator.CreateCloud();

        var failure = await Assert.ThrowsAsync<WorkerCloudException>(
            () => cloud.TrustAsync(Guid.NewGuid(), "instance-1", new string('c', 40), CancellationToken.None));

        Assert.Equal(AzureWorkerCloud.VmNotFound, failure.Reason);
    }

    [Fact]
    public async Task Deleting_a_missing_vm_succeeds()
    {
        var cloud = _emulator.CreateCloud();

        await cloud.DeleteAsync(Guid.NewGuid(), CancellationToken.None);

        Assert.Equal(404, Assert.Single(ArmRequests("DELETE")).Status);
    }

    [Fact]
    public async Task List_returns_only_vms_tagged_by_this_deployment_and_flags_those_still_provisioning()
    {
        var cloud = _emulator.CreateCloud();
        var ours = Guid.NewGuid();
        var creating = Guid.NewGuid();
        var theirs = Guid.NewGuid();
        Seed(ours, "dynamic-workers", "Succeeded");
        Seed(creating, "dynamic-workers", "Creating");
        Seed(theirs, "someone-else", "Succeeded");
        Server.State.Seed(ArmEmulatorFixture.SubscriptionId, ArmEmulatorFixture.ResourceGroup, "untagged-vm",
            new Dictionary<string, string>(), "Succeeded");

        var listed = await cloud.ListAsync(CancellationToken.None);

        Assert.False(listed.Single(v => v.WorkerId == ours).Provisioning);
        Assert.True(listed.Single(v => v.WorkerId == creating).Provisioning);
        Assert.DoesNotContain(listed, v => v.WorkerId == theirs);
        Assert.Equal("pool-a", listed.Single(v => v.WorkerId == ours).Pool);
        Assert.Equal(DateTimeOffset.UtcNow.AddHours(-1), listed.Single(v => v.WorkerId == ours).CreatedAt,
            TimeSpan.FromMinutes(1));
    }

    [Fact]
    public async Task The_generic_resource_list_filters_by_tag_as_arm_does_and_then_leaves_the_tags_out()
    {
        var ours = Guid.NewGuid();
        var theirs = Guid.NewGuid();
        Seed(ours, "dynamic-workers", "Succeeded");
        Seed(theirs, "someone-else", "Succeeded");
        var resourceGroup = AzureArm.CreateClient(_emulator.CreateOptions())
            .GetResourceGroupResource(ResourceGroupResource.CreateResourceIdentifier(ArmEmulatorFixture.SubscriptionId,
                ArmEmulatorFixture.ResourceGroup));

        var all = await resourceGroup.GetGenericResourcesAsync().ToListAsync();
        var tagged = await resourceGroup.GetGenericResourcesAsync(
            filter: "tagName eq 'dw-managed-by' and tagValue eq 'dynamic-workers'").ToListAsync();
        var named = await resourceGroup.GetGenericResourcesAsync(filter: "tagName eq 'DW-MANAGED-BY'").ToListAsync();
        var wrongCase = await resourceGroup.GetGenericResourcesAsync(
            filter: "tagName eq 'dw-managed-by' and tagValue eq 'Dynamic-Workers'").ToListAsync();

        var ourVm = AzureWorkerCloud.VmName(ours);
        var theirVm = AzureWorkerCloud.VmName(theirs);
        Assert.Contains(all, r => r.Data.Name == ourVm && r.Data.Tags["dw-managed-by"] == "dynamic-workers");
        Assert.Contains(all, r => r.Data.ResourceType == "Microsoft.Network/networkInterfaces"
            && r.Data.Name.StartsWith(ourVm, StringComparison.Ordinal));
        Assert.Contains(tagged,
            r => r.Data.Name == ourVm && r.Data.ResourceType == "Microsoft.Compute/virtualMachines");
        Assert.DoesNotContain(tagged,
            r => r.Data.Name == theirVm || r.Data.ResourceType != "Microsoft.Compute/virtualMachines");
        Assert.All(tagged, r => Assert.Empty(r.Data.Tags));
        Assert.Contains(named, r => r.Data.Name == ourVm);
        Assert.Contains(named, r => r.Data.Name == theirVm);
        Assert.Empty(wrongCase);
        Assert.All(ArmRequests("GET").Where(r => r.Path.EndsWith("/resources", StringComparison.OrdinalIgnoreCase)),
            r => Assert.Equal(200, r.Status));
    }

    [Fact]
    public async Task Readiness_reads_the_resource_group_and_reports_a_missing_one_with_the_arm_code()
    {
        var options = _emulator.CreateOptions();

        var healthy = await new AzureHealthCheck(AzureArm.CreateClient(options), Options.Create(options),
            TimeProvider.System).CheckHealthAsync(new HealthCheckContext());
        Server.Faults.ResourceGroupsMissing = true;
        var missing = await new AzureHealthCheck(AzureArm.CreateClient(options), Options.Create(options),
            TimeProvider.System).CheckHealthAsync(new HealthCheckContext());

        Assert.Equal(HealthStatus.Healthy, healthy.Status);
        Assert.Equal(HealthStatus.Unhealthy, missing.Status);
        Assert.Contains("ResourceGroupNotFound", missing.Description);
        Assert.All(ArmRequests("GET"), r => Assert.EndsWith($"/resourceGroups/{ArmEmulatorFixture.ResourceGroup}",
            r.Path, StringComparison.OrdinalIgnoreCase));
    }

    void Seed(Guid workerId, string managedBy, string state) => Server.State.Seed(
        ArmEmulatorFixture.SubscriptionId,
        ArmEmulatorFixture.ResourceGroup,
        AzureWorkerCloud.VmName(workerId),
        new Dictionary<string, string>
        {
            ["dw-managed-by"] = managedBy,
            ["dw-worker-id"] = workerId.ToString(),
            ["dw-pool"] = "pool-a",
            ["dw-created-at"] = DateTimeOffset.UtcNow.AddHours(-1).ToString("O"),
        },
        state);

    /// <summary>The ARM calls (not the token or state endpoints), in order.</summary>
    [Fact]
    public async Task Health_is_one_instance_view_read_running_until_the_vm_is_stopped_deallocated_or_gone()
    {
        var cloud = _emulator.CreateCloud(new Dictionary<string, string?> { ["Cloud:Azure:MaxRetries"] = "0" });
        var workerId = Guid.NewGuid();
        await cloud.CreateAsync(workerId, new VmSpec("ubuntu-22.04", Ubuntu, "Standard_D2s_v5"),
            CancellationToken.None);
        Server.ClearRequests();

        Assert.Equal(VmHealth.Running, await cloud.CheckAsync(workerId, CancellationToken.None));
        var read = Assert.Single(ArmRequests());
        Assert.Equal("GET", read.Method);
        Assert.EndsWith($"/virtualMachines/{AzureWorkerCloud.VmName(workerId)}/instanceView", read.Path,
            StringComparison.OrdinalIgnoreCase);

        Server.State.SetPowerState(workerId, "stopped");
        Assert.Equal(VmHealth.NotRunning, await cloud.CheckAsync(workerId, CancellationToken.None));
        Server.State.SetPowerState(workerId, "deallocated");
        Assert.Equal(VmHealth.NotRunning, await cloud.CheckAsync(workerId, CancellationToken.None));

        // Neither running nor stopped: the caller cannot tell, so it is told so.
        Server.State.SetPowerState(workerId, "starting");
        await Assert.ThrowsAnyAsync<Exception>(() => cloud.CheckAsync(workerId, CancellationToken.None));
        Server.State.SetPowerState(workerId, ArmState.Running);
        Server.Faults.Inject("GET", "/instanceView", 503);
        await Assert.ThrowsAnyAsync<Exception>(() => cloud.CheckAsync(workerId, CancellationToken.None));
        Assert.Equal(VmHealth.Running, await cloud.CheckAsync(workerId, CancellationToken.None));

        await cloud.DeleteAsync(workerId, CancellationToken.None);
        Assert.Equal(VmHealth.NotRunning, await cloud.CheckAsync(workerId, CancellationToken.None));
    }

    IReadOnlyList<RecordedRequest> ArmRequests(string? method = null)
        => Server.Requests.Where(r => !r.Path.StartsWith("/emulator/", StringComparison.OrdinalIgnoreCase)
            && (method is null || r.Method == method)).ToList();
}
