using System.Globalization;
using System.Text.Json;
using global::Azure;
using global::Azure.Core;
using global::Azure.ResourceManager;
using global::Azure.ResourceManager.Compute;
using global::Azure.ResourceManager.Compute.Models;
using global::Azure.ResourceManager.Resources;
using DynamicWorkers.Contracts;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Cloud.Azure;

/// <summary>
/// Worker VMs on Azure through Azure.ResourceManager.Compute. A VM is named after its worker id, so every call
/// finds "its" VM again; its NIC is declared inline and, like the OS disk, deleted with it. ARM's refusals
/// (after the SDK's own retries of 429 and 5xx) become <see cref="WorkerCloudException"/> carrying ARM's
/// error code, which the consumers report as <c>WorkerProvisioningFailed</c> / <c>WorkerTrustFailed</c>;
/// a network failure stays an ordinary exception and is retried by the bus.
/// </summary>
public sealed class AzureWorkerCloud : IWorkerCloud
{
    public const string ManagedByTag = "dw-managed-by";
    public const string WorkerIdTag = "dw-worker-id";
    public const string PoolTag = "dw-pool";
    public const string CreatedAtTag = "dw-created-at";
    public const string TrustedInstanceTag = "dw-trusted-instance";
    public const string TrustedThumbprintTag = "dw-trusted-thumbprint";

    public const string InvalidThumbprint = "InvalidThumbprint";
    public const string InvalidImage = "InvalidImage";
    public const string VmNotFound = "VmNotFound";
    public const string VmNotReady = "VmNotReady";
    public const string ProvisioningTimedOut = "ProvisioningTimedOut";
    public const string TrustTimedOut = "TrustTimedOut";
    public const string NoAgentThumbprint = "TrustScriptPrintedNoThumbprint";
    public const string NoPrivateAddress = "NoPrivateAddress";
    public const string AlreadyTrustsAnotherInstance = "AlreadyTrustsAnotherInstance";

    /// <summary>The instance view's status of a VM that runs.</summary>
    public const string RunningPowerState = "PowerState/running";

    readonly ArmClient _arm;
    readonly AzureCloudOptions _options;
    readonly ILogger<AzureWorkerCloud> _logger;
    readonly SemaphoreSlim _creates;
    readonly ResourceGroupResource _resourceGroup;

    public AzureWorkerCloud(ArmClient arm, IOptions<AzureCloudOptions> options, ILogger<AzureWorkerCloud> logger)
    {
        _arm = arm;
        _options = options.Value;
        _logger = logger;
        _creates = new SemaphoreSlim(_options.MaxConcurrentCreates);
        // Sends nothing: the resource group is only a path prefix here.
        _resourceGroup = arm.GetResourceGroupResource(
            ResourceGroupResource.CreateResourceIdentifier(_options.SubscriptionId, _options.ResourceGroup));
    }

    /// <summary>Stable per worker: a redelivered create finds the VM the first one started.</summary>
    public static string VmName(Guid workerId) => $"dw-{workerId:N}";

    public async Task<CloudVm> CreateAsync(Guid workerId, VmSpec spec, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.CreateTimeout);
        try
        {
            var vm = await FindAsync(workerId, timeout.Token) ?? await PutAsync(workerId, spec, timeout.Token);
            vm = await WaitWhileProvisioningAsync(vm, timeout.Token);
            if (!IsState(vm.Data, "Succeeded"))
            {
                throw new WorkerCloudException($"VmProvisioningState{vm.Data.ProvisioningState}");
            }

            var address = await PrivateAddressAsync(vm.Data, timeout.Token);
            var created = ToCloudVm(vm.Data) ?? throw new WorkerCloudException("VmNotTagged");
            // The agent's own thumbprint comes back from the trust script; until then it is unknown.
            return created with { Address = $"{address}:{_options.AgentPort}", AgentThumbprint = "" };
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested
            && !cancellationToken.IsCancellationRequested)
        {
            throw new WorkerCloudException(ProvisioningTimedOut);
        }
        catch (RequestFailedException e) when (IsRefusal(e))
        {
            _logger.LogWarning("Creating the VM of worker {WorkerId} failed: {Status} {Code} {Message}", workerId,
                e.Status, e.ErrorCode, e.Message);
            throw new WorkerCloudException(ReasonOf(e), e);
        }
    }

    public async Task<string> TrustAsync(Guid workerId, string instanceId, string thumbprint,
        CancellationToken cancellationToken)
    {
        // Checked here too, not only by the consumer: this value ends up in a script run as root on the worker.
        if (!Thumbprint.IsValid(thumbprint))
        {
            throw new WorkerCloudException(InvalidThumbprint);
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.RunCommandTimeout);
        try
        {
            var vm = await FindAsync(workerId, timeout.Token) ?? throw new WorkerCloudException(VmNotFound);
            if (!IsState(vm.Data, "Succeeded"))
            {
                throw new WorkerCloudException(VmNotReady);
            }

            vm = await ClaimAsync(vm, instanceId, thumbprint, timeout.Token);
            var pool = vm.Data.Tags.TryGetValue(PoolTag, out var p) ? p : "";
            var poolOptions = _options.Pools.GetValueOrDefault(pool);
            var os = poolOptions?.OsType
                     ?? (vm.Data.StorageProfile?.OSDisk?.OSType == SupportedOperatingSystemType.Windows
                         ? WorkerOsType.Windows : WorkerOsType.Linux);
            var input = TrustScript.Build(os, poolOptions?.TrustScript, thumbprint);

            var result = (await vm.RunCommandAsync(WaitUntil.Completed, input, timeout.Token)).Value;
            var agentThumbprint = TrustScript.AgentThumbprint(result.Value);
            if (agentThumbprint is null)
            {
                _logger.LogWarning(
                    "The trust script on worker {WorkerId} (instance {InstanceId}) printed no agent thumbprint; "
                    + "stderr: {StdErr}",
                    workerId, instanceId, TrustScript.StdErr(result.Value));
                throw new WorkerCloudException(NoAgentThumbprint);
            }

            _logger.LogInformation("Worker {WorkerId} trusts instance {InstanceId}; agent thumbprint {AgentThumbprint}",
                workerId, instanceId, agentThumbprint);
            return agentThumbprint;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested
            && !cancellationToken.IsCancellationRequested)
        {
            throw new WorkerCloudException(TrustTimedOut);
        }
        catch (RequestFailedException e) when (IsRefusal(e))
        {
            _logger.LogWarning("Trusting instance {InstanceId} on worker {WorkerId} failed: {Status} {Code} {Message}",
                instanceId, workerId, e.Status, e.ErrorCode, e.Message);
            throw new WorkerCloudException(ReasonOf(e), e);
        }
    }

    public async Task DeleteAsync(Guid workerId, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.CreateTimeout);
        var vm = _arm.GetVirtualMachineResource(VirtualMachineResource.CreateResourceIdentifier(_options.SubscriptionId,
            _options.ResourceGroup, VmName(workerId)));
        try
        {
            // The NIC and the OS disk were created with deleteOption Delete: ARM removes them with the VM.
            await vm.DeleteAsync(WaitUntil.Completed, forceDeletion: null, timeout.Token);
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            // Already gone: a redelivered or repeated delete.
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested
            && !cancellationToken.IsCancellationRequested)
        {
            // Not a refusal: the bus retries, and the reaper's sweep repeats the delete later.
            throw new TimeoutException(
                $"deleting the VM of worker {workerId} did not finish within {_options.CreateTimeout}");
        }
    }

    /// <summary>
    /// The resource group's VMs carrying this deployment's <c>dw-managed-by</c> tag. Filtered here, not by ARM:
    /// the VM list has no tag filter, and the generic resource list drops tags when it filters by one.
    /// </summary>
    public async Task<IReadOnlyList<CloudVm>> ListAsync(CancellationToken cancellationToken)
    {
        var vms = new List<CloudVm>();
        await foreach (var vm in _resourceGroup.GetVirtualMachines().GetAllAsync(filter: null, expand: null,
            cancellationToken))
        {
            if (ToCloudVm(vm.Data) is { } managed)
            {
                vms.Add(managed);
            }
        }

        return vms;
    }

    /// <summary>
    /// One ARM read of the VM's instance view (counted against the subscription's read limit): running on
    /// <c>PowerState/running</c>; not running when it is gone (404), failed to provision, or stopped or deallocated
    /// (also while stopping or deallocating). Any other answer (no power state yet, starting) or an error throws.
    /// </summary>
    public async Task<VmHealth> CheckAsync(Guid workerId, CancellationToken cancellationToken)
    {
        var vm = _arm.GetVirtualMachineResource(VirtualMachineResource.CreateResourceIdentifier(_options.SubscriptionId,
            _options.ResourceGroup, VmName(workerId)));
        VirtualMachineInstanceView view;
        try
        {
            view = (await vm.InstanceViewAsync(cancellationToken)).Value;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return VmHealth.NotRunning;
        }

        var codes = view.Statuses.Select(s => s.Code ?? "").ToList();
        if (codes.Contains(RunningPowerState, StringComparer.OrdinalIgnoreCase))
        {
            return VmHealth.Running;
        }

        if (codes.Any(code => NotRunningPowerStates.Contains(code, StringComparer.OrdinalIgnoreCase)
                              || code.StartsWith(FailedProvisioning, StringComparison.OrdinalIgnoreCase)))
        {
            return VmHealth.NotRunning;
        }

        throw new InvalidOperationException(
            $"the VM of worker {workerId} reports no settled power state ({string.Join(", ", codes)})");
    }

    /// <summary>Azure adds the error code after it, e.g. <c>ProvisioningState/failed/AllocationFailed</c>.</summary>
    const string FailedProvisioning = "ProvisioningState/failed";

    static readonly string[] NotRunningPowerStates = ["PowerState/stopped", "PowerState/stopping",
        "PowerState/deallocated", "PowerState/deallocating"];

    /// <summary>
    /// Records on the VM, as tags, whom it trusts before the script runs, and refuses a VM already claimed by
    /// another instance or thumbprint: the worker saga decides isolation, this is the cloud-side second guard
    /// (and what an operator sees in the portal). A repeat for the same instance re-runs the script, which is
    /// idempotent. Two different instances racing within one PATCH are not caught here (ARM has no tag ETag).
    /// </summary>
    async Task<VirtualMachineResource> ClaimAsync(VirtualMachineResource vm, string instanceId, string thumbprint,
        CancellationToken cancellationToken)
    {
        if (vm.Data.Tags.TryGetValue(TrustedInstanceTag, out var trustedInstance))
        {
            var sameThumbprint = vm.Data.Tags.TryGetValue(TrustedThumbprintTag, out var trusted)
                                 && string.Equals(trusted, thumbprint, StringComparison.OrdinalIgnoreCase);
            return trustedInstance == instanceId && sameThumbprint ? vm
                : throw new WorkerCloudException(AlreadyTrustsAnotherInstance);
        }

        var patch = new VirtualMachinePatch();
        foreach (var (key, value) in vm.Data.Tags)
        {
            patch.Tags[key] = value;
        }

        patch.Tags[TrustedInstanceTag] = instanceId;
        patch.Tags[TrustedThumbprintTag] = thumbprint.ToUpperInvariant();
        return (await vm.UpdateAsync(WaitUntil.Completed, patch, cancellationToken: cancellationToken)).Value;
    }

    async Task<VirtualMachineResource?> FindAsync(Guid workerId, CancellationToken cancellationToken)
    {
        try
        {
            return (await _resourceGroup.GetVirtualMachines().GetAsync(VmName(workerId), expand: null,
                cancellationToken)).Value;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return null;
        }
    }

    async Task<VirtualMachineResource> PutAsync(Guid workerId, VmSpec spec, CancellationToken cancellationToken)
    {
        var data = VmData(workerId, spec);
        await _creates.WaitAsync(cancellationToken);
        try
        {
            _logger.LogInformation("Creating VM {VmName} for worker {WorkerId} in pool {Pool} ({Image}, {Size})",
                VmName(workerId), workerId, spec.Pool, spec.Image, spec.Size);
            // Polls the Azure-AsyncOperation (or the VM's provisioningState) as the SDK does, then GETs the VM.
            var operation = await _resourceGroup.GetVirtualMachines().CreateOrUpdateAsync(WaitUntil.Completed,
                VmName(workerId), data, cancellationToken);
            return operation.Value;
        }
        catch (RequestFailedException e) when (e.Status == 409)
        {
            // A concurrent create of the same worker got there first: wait for that VM instead.
            return await FindAsync(workerId, cancellationToken) ?? throw new WorkerCloudException(ReasonOf(e), e);
        }
        finally
        {
            _creates.Release();
        }
    }

    /// <summary>A VM found mid-creation (a redelivery) is waited for, polling its state with a growing pause.</summary>
    async Task<VirtualMachineResource> WaitWhileProvisioningAsync(VirtualMachineResource vm,
        CancellationToken cancellationToken)
    {
        var pause = TimeSpan.FromSeconds(1);
        while (IsProvisioning(vm.Data))
        {
            await Task.Delay(pause, cancellationToken);
            pause = TimeSpan.FromSeconds(Math.Min(pause.TotalSeconds * 2, 15));
            vm = (await vm.GetAsync(expand: null, cancellationToken)).Value;
        }

        return vm;
    }

    VirtualMachineData VmData(Guid workerId, VmSpec spec)
    {
        var poolOptions = _options.Pools.GetValueOrDefault(spec.Pool);
        var image = ParseImage(spec.Image);
        var os = poolOptions?.OsType
                 ?? (image.Publisher?.Contains("Windows", StringComparison.OrdinalIgnoreCase) == true
                     ? WorkerOsType.Windows : WorkerOsType.Linux);

        var osProfile = new VirtualMachineOSProfile
        {
            // Windows computer names are at most 15 characters.
            ComputerName = $"dw{workerId:N}"[..15],
            AdminUsername = _options.AdminUsername,
        };
        if (os == WorkerOsType.Windows)
        {
            osProfile.AdminPassword = _options.AdminPassword is { Length: > 0 } password
                ? password
                : throw new WorkerCloudException("AdminPasswordRequiredForWindows");
        }
        else if (!string.IsNullOrEmpty(_options.SshPublicKey))
        {
            osProfile.LinuxConfiguration = new LinuxConfiguration { IsPasswordAuthenticationDisabled = true };
            osProfile.LinuxConfiguration.SshPublicKeys.Add(new SshPublicKeyConfiguration
            {
                Path = $"/home/{_options.AdminUsername}/.ssh/authorized_keys",
                KeyData = _options.SshPublicKey,
            });
        }
        else
        {
            osProfile.AdminPassword = _options.AdminPassword;
        }

        var ipConfiguration = new VirtualMachineNetworkInterfaceIPConfiguration("ipconfig1")
        {
            Primary = true,
            SubnetId = new ResourceIdentifier(_options.SubnetId),
        };
        var nic = new VirtualMachineNetworkInterfaceConfiguration("nic")
        {
            Primary = true,
            DeleteOption = ComputeDeleteOption.Delete,
        };
        nic.IPConfigurations.Add(ipConfiguration);

        var data = new VirtualMachineData(new AzureLocation(_options.Location))
        {
            HardwareProfile = new VirtualMachineHardwareProfile { VmSize = new VirtualMachineSizeType(spec.Size) },
            StorageProfile = new VirtualMachineStorageProfile
            {
                ImageReference = image,
                OSDisk = new VirtualMachineOSDisk(DiskCreateOptionType.FromImage)
                {
                    DeleteOption = DiskDeleteOptionType.Delete,
                },
            },
            OSProfile = osProfile,
            NetworkProfile = new VirtualMachineNetworkProfile
            {
                NetworkApiVersion = NetworkApiVersion.TwoThousandTwenty1101,
            },
        };
        data.NetworkProfile.NetworkInterfaceConfigurations.Add(nic);
        data.Tags[ManagedByTag] = _options.ManagedBy;
        data.Tags[WorkerIdTag] = workerId.ToString();
        data.Tags[PoolTag] = spec.Pool;
        data.Tags[CreatedAtTag] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);
        return data;
    }

    /// <summary>
    /// A marketplace reference <c>publisher:offer:sku:version</c>, or a gallery image (version) resource id.
    /// </summary>
    public static ImageReference ParseImage(string image)
    {
        if (image.StartsWith("/subscriptions/", StringComparison.OrdinalIgnoreCase))
        {
            return new ImageReference { Id = new ResourceIdentifier(image) };
        }

        var parts = image.Split(':');
        if (parts.Length != 4 || parts.Any(string.IsNullOrWhiteSpace))
        {
            throw new WorkerCloudException(InvalidImage);
        }

        return new ImageReference { Publisher = parts[0], Offer = parts[1], Sku = parts[2], Version = parts[3] };
    }

    /// <summary>The primary NIC's private IP, read through the generic resource API (no Network SDK needed).</summary>
    async Task<string> PrivateAddressAsync(VirtualMachineData vm, CancellationToken cancellationToken)
    {
        var nicId = vm.NetworkProfile?.NetworkInterfaces.FirstOrDefault(n => n.Primary != false)?.Id
                    ?? throw new WorkerCloudException(NoPrivateAddress);
        var nic = (await _arm.GetGenericResource(nicId).GetAsync(cancellationToken)).Value;
        using var properties = JsonDocument.Parse(nic.Data.Properties.ToMemory());
        if (properties.RootElement.TryGetProperty("ipConfigurations", out var configurations)
            && configurations.ValueKind == JsonValueKind.Array
            && configurations.GetArrayLength() > 0
            && configurations[0].TryGetProperty("properties", out var first)
            && first.TryGetProperty("privateIPAddress", out var address)
            && address.GetString() is { Length: > 0 } ip)
        {
            return ip;
        }

        throw new WorkerCloudException(NoPrivateAddress);
    }

    CloudVm? ToCloudVm(VirtualMachineData vm)
    {
        if (!vm.Tags.TryGetValue(ManagedByTag, out var managedBy) || managedBy != _options.ManagedBy
            || !vm.Tags.TryGetValue(WorkerIdTag, out var id) || !Guid.TryParse(id, out var workerId))
        {
            return null;
        }

        // Without a readable creation time the VM counts as new, so the sweep leaves it alone.
        var createdAt = vm.Tags.TryGetValue(CreatedAtTag, out var at)
                        && DateTimeOffset.TryParse(at, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind,
                            out var parsed)
            ? parsed
            : DateTimeOffset.UtcNow;
        var pool = vm.Tags.TryGetValue(PoolTag, out var p) ? p : "";
        return new CloudVm(workerId, pool, "", "", createdAt, IsProvisioning(vm),
            vm.Tags.TryGetValue(TrustedInstanceTag, out var trusted) ? trusted : null);
    }

    static bool IsState(VirtualMachineData vm, string state)
        => string.Equals(vm.ProvisioningState, state, StringComparison.OrdinalIgnoreCase);

    /// <summary>Creating or updating: not settled yet (the sweep never deletes such a VM).</summary>
    static bool IsProvisioning(VirtualMachineData vm) => vm.ProvisioningState is null || IsState(vm, "Creating")
        || IsState(vm, "Updating");

    /// <summary>
    /// An answer from ARM (the SDK already retried throttling and server errors); status 0 is a network failure.
    /// </summary>
    static bool IsRefusal(RequestFailedException e) => e.Status != 0;

    static string ReasonOf(RequestFailedException e) => e.ErrorCode is { Length: > 0 } code ? code : $"Http{e.Status}";
}
