using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace DynamicWorkers.ArmEmulator;

/// <summary>An answer to one ARM request.</summary>
public sealed record ArmResponse(int Status, JsonNode? Body = null, IReadOnlyDictionary<string, string>? Headers = null)
{
    public static ArmResponse Error(int status, string code, string message)
        => new(status, new JsonObject { ["error"] = new JsonObject { ["code"] = code, ["message"] = message } });
}

/// <summary>A VM as the emulator holds it; kept after deletion (<see cref="Deleted"/>) so tests can read the whole
/// history.</summary>
public sealed class EmulatedVm
{
    public required string Subscription { get; init; }
    public required string ResourceGroup { get; init; }
    public required string Name { get; init; }
    public required string Location { get; init; }
    public required JsonObject Body { get; init; }
    public required Dictionary<string, string> Tags { get; init; }
    public required string OsType { get; init; }
    public required string AgentThumbprint { get; init; }
    public required string NicId { get; init; }
    public required string PrivateIp { get; init; }
    public required string? NicDeleteOption { get; init; }
    public required string? OsDiskDeleteOption { get; init; }
    public string ProvisioningState { get; set; } = "Creating";

    /// <summary>The power state the instance view reports once provisioned (<c>running</c>, <c>stopped</c>,
    /// <c>deallocated</c>…).</summary>
    public string PowerState { get; set; } = ArmState.Running;
    public bool Deleted { get; set; }
    public string? FailureCode { get; set; }
    public List<string> TrustedThumbprints { get; } = [];
    public string VmId { get; } = Guid.NewGuid().ToString();

    public string Id => $"/subscriptions/{Subscription}/resourceGroups/{ResourceGroup}/providers/Microsoft.Compute"
        + $"/virtualMachines/{Name}";

    public Guid? WorkerId
        => Tags.TryGetValue("dw-worker-id", out var id) && Guid.TryParse(id, out var workerId) ? workerId : null;
}

/// <summary>One Run Command the emulator received.</summary>
public sealed record RunCommandRecord(string VmName, Guid? WorkerId, string CommandId, IReadOnlyList<string> Script,
    DateTimeOffset At);

/// <summary>
/// The emulator's resources in memory: VMs, their inline NICs, async operations. Operations finish when their
/// time comes, observed at the next request ("settled"), so nothing runs in the background.
/// </summary>
public sealed partial class ArmState(EmulatorFaults faults)
{
    const string ComputeApiVersion = "2023-07-01";

    public const string Running = "running";

    readonly object _gate = new();
    readonly Dictionary<string, EmulatedVm> _vms = new(StringComparer.OrdinalIgnoreCase);
    readonly List<EmulatedVm> _history = [];
    readonly Dictionary<string, EmulatedVm> _nics = new(StringComparer.OrdinalIgnoreCase);
    readonly Dictionary<string, Operation> _operations = [];
    readonly List<RunCommandRecord> _runCommands = [];
    int _addresses;

    /// <summary>Every VM ever created, deleted ones included.</summary>
    public IReadOnlyList<EmulatedVm> AllVms { get { lock (_gate) { Settle(); return _history.ToList(); } } }

    /// <summary>VMs that exist now (any state but gone).</summary>
    public IReadOnlyList<EmulatedVm> Vms { get { lock (_gate) { Settle(); return _vms.Values.ToList(); } } }

    public int NetworkInterfaceCount { get { lock (_gate) { Settle(); return _nics.Count; } } }

    public IReadOnlyList<RunCommandRecord> RunCommands { get { lock (_gate) { return _runCommands.ToList(); } } }

    /// <summary>Puts a VM straight into a state, as if created earlier by someone else (e.g. a provisioner that
    /// crashed).</summary>
    public EmulatedVm Seed(string subscription, string resourceGroup, string name,
        IReadOnlyDictionary<string, string> tags, string provisioningState)
    {
        lock (_gate)
        {
            var vm = NewVm(subscription, resourceGroup, name, "westeurope",
                new JsonObject { ["properties"] = new JsonObject() }, tags.ToDictionary());
            vm.ProvisioningState = provisioningState;
            return vm;
        }
    }

    /// <summary>A JSON view for a test that runs the emulator as a separate process (<c>GET
    /// /emulator/state</c>).</summary>
    public JsonObject Snapshot()
    {
        lock (_gate)
        {
            Settle();
            var vms = new JsonArray();
            foreach (var vm in _history)
            {
                vms.Add(new JsonObject
                {
                    ["name"] = vm.Name,
                    ["workerId"] = vm.WorkerId?.ToString(),
                    ["provisioningState"] = vm.ProvisioningState,
                    ["deleted"] = vm.Deleted,
                    ["trustedThumbprints"] = new JsonArray(vm.TrustedThumbprints.Select(t => (JsonNode)t).ToArray()),
                });
            }

            return new JsonObject { ["vms"] = vms, ["networkInterfaces"] = _nics.Count };
        }
    }

    public ArmResponse PutVm(string baseUri, string subscription, string resourceGroup, string name, JsonObject? body)
    {
        lock (_gate)
        {
            Settle();
            if (body?["location"]?.GetValue<string>() is not { Length: > 0 } location)
            {
                return ArmResponse.Error(400, "LocationRequired",
                    "The location property is required for this definition.");
            }

            if (_vms.TryGetValue(Key(subscription, resourceGroup, name), out var existing))
            {
                if (existing.ProvisioningState == "Deleting")
                {
                    return ArmResponse.Error(409, "OperationNotAllowed", "The VM is being deleted.");
                }

                // A PUT of an existing VM is an update; nothing the adapter sends changes it.
                return new ArmResponse(200, VmJson(existing));
            }

            var tags = body["tags"] is JsonObject tagNode
                ? tagNode.ToDictionary(t => t.Key, t => t.Value?.GetValue<string>() ?? "") : [];
            var vm = NewVm(subscription, resourceGroup, name, location, body, tags);
            var completesAt = faults.CreatesNeverFinish
                ? (DateTimeOffset?)null : DateTimeOffset.UtcNow + faults.CreateDuration;
            var operation = Start(OperationKind.Create, vm, completesAt, faults.CreateFailureCode);
            return new ArmResponse(201, VmJson(vm), OperationHeaders(baseUri, vm, operation, location: false));
        }
    }

    /// <summary>An update: only tags are taken (they replace the VM's tags, as in ARM); answered at once.</summary>
    public ArmResponse PatchVm(string subscription, string resourceGroup, string name, JsonObject? body)
    {
        lock (_gate)
        {
            Settle();
            if (!_vms.TryGetValue(Key(subscription, resourceGroup, name), out var vm))
            {
                return NotFound("Microsoft.Compute/virtualMachines", name, resourceGroup);
            }

            if (body?["tags"] is JsonObject tags)
            {
                vm.Tags.Clear();
                foreach (var (key, value) in tags)
                {
                    vm.Tags[key] = value?.GetValue<string>() ?? "";
                }
            }

            return new ArmResponse(200, VmJson(vm));
        }
    }

    public ArmResponse GetVm(string subscription, string resourceGroup, string name)
    {
        lock (_gate)
        {
            Settle();
            return _vms.TryGetValue(Key(subscription, resourceGroup, name), out var vm)
                ? new ArmResponse(200, VmJson(vm))
                : NotFound("Microsoft.Compute/virtualMachines", name, resourceGroup);
        }
    }

    /// <summary>The VM's instance view: its provisioning state and, once provisioned, its power state.</summary>
    public ArmResponse GetInstanceView(string subscription, string resourceGroup, string name)
    {
        lock (_gate)
        {
            Settle();
            if (!_vms.TryGetValue(Key(subscription, resourceGroup, name), out var vm))
            {
                return NotFound("Microsoft.Compute/virtualMachines", name, resourceGroup);
            }

            var provisioning = vm.ProvisioningState == "Failed"
                ? $"ProvisioningState/failed/{vm.FailureCode ?? "InternalError"}"
                : $"ProvisioningState/{vm.ProvisioningState.ToLowerInvariant()}";
            var statuses = new JsonArray(new JsonObject { ["code"] = provisioning, ["level"] = "Info",
                ["displayStatus"] = vm.ProvisioningState });
            if (vm.ProvisioningState is "Succeeded" or "Deleting")
            {
                statuses.Add(new JsonObject { ["code"] = $"PowerState/{vm.PowerState}", ["level"] = "Info",
                    ["displayStatus"] = $"VM {vm.PowerState}" });
            }

            return new ArmResponse(200, new JsonObject { ["computerName"] = vm.Name, ["statuses"] = statuses });
        }
    }

    /// <summary>As if the VM was stopped, deallocated or crashed behind the service's back: its instance view reports
    /// <paramref name="powerState"/>.</summary>
    public void SetPowerState(Guid workerId, string powerState)
    {
        lock (_gate)
        {
            Settle();
            _vms.Values.Single(v => v.WorkerId == workerId).PowerState = powerState;
        }
    }

    /// <summary>In creation order, so a test can know which VM a caller sees first.</summary>
    public ArmResponse ListVms(string subscription, string resourceGroup)
    {
        lock (_gate)
        {
            Settle();
            var value = new JsonArray(LiveVms(subscription, resourceGroup).Select(v => (JsonNode)VmJson(v)).ToArray());
            return new ArmResponse(200, new JsonObject { ["value"] = value });
        }
    }

    /// <summary>
    /// The generic resource list of a resource group (the VMs and their NICs), with the <c>$filter</c> forms ARM
    /// takes here: <c>tagName eq 'n'</c>, <c>tagName eq 'n' and tagValue eq 'v'</c> (tag names match in any case,
    /// values exactly) and <c>resourceType eq 't'</c>. As in ARM, a tag filter drops the tags from the answer.
    /// Any other filter is refused rather than ignored, so a caller cannot believe it filtered.
    /// </summary>
    public ArmResponse ListResources(string subscription, string resourceGroup, string filter)
    {
        lock (_gate)
        {
            Settle();
            var resources = LiveVms(subscription, resourceGroup)
                .SelectMany(v => new[]
                {
                    (Id: v.Id, Type: "Microsoft.Compute/virtualMachines", v.Location, v.Tags),
                    (Id: v.NicId, Type: "Microsoft.Network/networkInterfaces", v.Location,
                        Tags: new Dictionary<string, string>()),
                })
                .Where(r => _nics.ContainsKey(r.Id) || r.Type == "Microsoft.Compute/virtualMachines")
                .ToList();
            var withTags = true;
            if (filter.Length > 0)
            {
                if (TagFilter().Match(filter) is { Success: true } tag)
                {
                    var name = tag.Groups["name"].Value;
                    var value = tag.Groups["value"];
                    resources = resources.Where(
                        r => r.Tags.Any(t => string.Equals(t.Key, name, StringComparison.OrdinalIgnoreCase)
                                                                     && (!value.Success || t.Value == value.Value)))
                                                                         .ToList();
                    withTags = false;
                }
                else if (TypeFilter().Match(filter) is { Success: true } type)
                {
                    resources = resources.Where(r => string.Equals(r.Type, type.Groups["type"].Value,
                        StringComparison.OrdinalIgnoreCase)).ToList();
                }
                else
                {
                    return ArmResponse.Error(400, "NotEmulated",
                        $"The $filter '{filter}' is not part of the emulator.");
                }
            }

            var list = new JsonArray();
            foreach (var resource in resources)
            {
                var item = new JsonObject
                {
                    ["id"] = resource.Id,
                    ["name"] = resource.Id[(resource.Id.LastIndexOf('/') + 1)..],
                    ["type"] = resource.Type,
                    ["location"] = resource.Location,
                };
                if (withTags)
                {
                    item["tags"] =
                        new JsonObject(resource.Tags.Select(t => KeyValuePair.Create(t.Key, (JsonNode?)t.Value)));
                }

                list.Add(item);
            }

            return new ArmResponse(200, new JsonObject { ["value"] = list });
        }
    }

    public ArmResponse DeleteVm(string baseUri, string subscription, string resourceGroup, string name)
    {
        lock (_gate)
        {
            Settle();
            if (!_vms.TryGetValue(Key(subscription, resourceGroup, name), out var vm))
            {
                return NotFound("Microsoft.Compute/virtualMachines", name, resourceGroup);
            }

            // A delete overtakes a create still running (the "never finishes" fault included).
            foreach (var pending in _operations.Values.Where(o => o.Vm == vm && o.Status == "InProgress"))
            {
                pending.Status = "Canceled";
            }

            vm.ProvisioningState = "Deleting";
            var operation = Start(OperationKind.Delete, vm, DateTimeOffset.UtcNow, failureCode: null);
            return new ArmResponse(202, null, OperationHeaders(baseUri, vm, operation, location: true));
        }
    }

    public ArmResponse RunCommand(string baseUri, string subscription, string resourceGroup, string name,
        JsonObject? body)
    {
        lock (_gate)
        {
            Settle();
            if (!_vms.TryGetValue(Key(subscription, resourceGroup, name), out var vm))
            {
                return NotFound("Microsoft.Compute/virtualMachines", name, resourceGroup);
            }

            if (vm.ProvisioningState != "Succeeded")
            {
                return ArmResponse.Error(409, "OperationNotAllowed",
                    $"Run Command is not allowed while the VM is {vm.ProvisioningState}.");
            }

            var commandId = body?["commandId"]?.GetValue<string>() ?? "";
            var script = body?["script"] is JsonArray lines
                ? lines.Select(l => l?.GetValue<string>() ?? "").ToList() : [];
            _runCommands.Add(new RunCommandRecord(vm.Name, vm.WorkerId, commandId, script, DateTimeOffset.UtcNow));

            // The emulated agent: trusts the hex thumbprints the script names, then prints its own.
            var stdout = "";
            var stderr = "Tentacle: configure failed (exit code 1)";
            if (!faults.TrustScriptsFail)
            {
                vm.TrustedThumbprints.AddRange(
                    HexWord().Matches(string.Join("\n", script)).Select(m => m.Value.ToUpperInvariant()).Distinct());
                stdout = $"Trust reset.\nTrusting the thumbprint.\nService restarted.\nThe thumbprint of this Tentacle "
                    + $"is: {vm.AgentThumbprint}\n";
                stderr = "";
            }

            var operation = Start(OperationKind.RunCommand, vm, DateTimeOffset.UtcNow, failureCode: null);
            operation.Result = RunCommandResult(vm.OsType, stdout, stderr);
            return new ArmResponse(202, null, OperationHeaders(baseUri, vm, operation, location: true));
        }
    }

    public ArmResponse GetNic(string subscription, string resourceGroup, string name)
    {
        lock (_gate)
        {
            Settle();
            var id = $"/subscriptions/{subscription}/resourceGroups/{resourceGroup}/providers/Microsoft.Network"
                + $"/networkInterfaces/{name}";
            if (!_nics.TryGetValue(id, out var vm))
            {
                return NotFound("Microsoft.Network/networkInterfaces", name, resourceGroup);
            }

            var subnet = vm.Body["properties"]?["networkProfile"]?["networkInterfaceConfigurations"]?[0]?[
                "properties"]?["ipConfigurations"]?[0]?["properties"]?["subnet"]?["id"]?.GetValue<string>();
            return new ArmResponse(200, new JsonObject
            {
                ["id"] = vm.NicId,
                ["name"] = name,
                ["type"] = "Microsoft.Network/networkInterfaces",
                ["location"] = vm.Location,
                ["properties"] = new JsonObject
                {
                    ["provisioningState"] = "Succeeded",
                    ["ipConfigurations"] = new JsonArray(new JsonObject
                    {
                        ["name"] = "ipconfig1",
                        ["properties"] = new JsonObject
                        {
                            ["privateIPAddress"] = vm.PrivateIp,
                            ["privateIPAllocationMethod"] = "Dynamic",
                            ["subnet"] = new JsonObject { ["id"] = subnet },
                        },
                    }),
                },
            });
        }
    }

    public ArmResponse OperationStatus(string id)
    {
        lock (_gate)
        {
            Settle();
            if (!_operations.TryGetValue(id, out var operation))
            {
                return ArmResponse.Error(404, "OperationNotFound", $"Operation {id} not found.");
            }

            var status = new JsonObject { ["name"] = id, ["status"] = operation.Status,
                ["startTime"] = operation.StartedAt.ToString("O") };
            if (operation.Status == "Failed")
            {
                status["error"] = new JsonObject { ["code"] = operation.FailureCode,
                    ["message"] = $"The operation failed: {operation.FailureCode}." };
            }

            return new ArmResponse(200, status);
        }
    }

    public ArmResponse OperationResult(string baseUri, string id)
    {
        lock (_gate)
        {
            Settle();
            if (!_operations.TryGetValue(id, out var operation))
            {
                return ArmResponse.Error(404, "OperationNotFound", $"Operation {id} not found.");
            }

            if (operation.Status == "InProgress")
            {
                return new ArmResponse(202, null, OperationHeaders(baseUri, operation.Vm, operation, location: true));
            }

            return operation.Result is null ? new ArmResponse(204) : new ArmResponse(200, operation.Result.DeepClone());
        }
    }

    IEnumerable<EmulatedVm> LiveVms(string subscription, string resourceGroup)
        => _history.Where(v => string.Equals(v.Subscription, subscription, StringComparison.OrdinalIgnoreCase)
                               && string.Equals(v.ResourceGroup, resourceGroup, StringComparison.OrdinalIgnoreCase)
                               && _vms.TryGetValue(Key(v.Subscription, v.ResourceGroup, v.Name), out var live)
                                   && live == v);

    EmulatedVm NewVm(string subscription, string resourceGroup, string name, string location, JsonObject body,
        Dictionary<string, string> tags)
    {
        var n = _addresses++;
        var publisher = body["properties"]?["storageProfile"]?["imageReference"]?["publisher"]?.GetValue<string>()
            ?? "";
        var nicConfiguration = body["properties"]?["networkProfile"]?["networkInterfaceConfigurations"]?[0];
        var stored = (JsonObject)body.DeepClone();
        // ARM never returns the admin password.
        (stored["properties"]?["osProfile"] as JsonObject)?.Remove("adminPassword");
        var vm = new EmulatedVm
        {
            Subscription = subscription,
            ResourceGroup = resourceGroup,
            Name = name,
            Location = location,
            Body = stored,
            Tags = tags,
            OsType = publisher.Contains("Windows", StringComparison.OrdinalIgnoreCase) ? "Windows" : "Linux",
            AgentThumbprint = Convert.ToHexString(RandomNumberGenerator.GetBytes(20)),
            NicId = $"/subscriptions/{subscription}/resourceGroups/{resourceGroup}/providers/Microsoft.Network"
                + $"/networkInterfaces/{name}-{nicConfiguration?["name"]?.GetValue<string>() ?? "nic"}",
            PrivateIp = $"10.0.{n / 250 % 256}.{n % 250 + 4}",
            NicDeleteOption = nicConfiguration?["properties"]?["deleteOption"]?.GetValue<string>(),
            OsDiskDeleteOption = body["properties"]?["storageProfile"]?["osDisk"]?["deleteOption"]?.GetValue<string>(),
        };
        _vms[Key(subscription, resourceGroup, name)] = vm;
        _nics[vm.NicId] = vm;
        _history.Add(vm);
        return vm;
    }

    Operation Start(OperationKind kind, EmulatedVm vm, DateTimeOffset? completesAt, string? failureCode)
    {
        var operation =
            new Operation(Guid.NewGuid().ToString(), kind, vm, DateTimeOffset.UtcNow, completesAt, failureCode);
        _operations[operation.Id] = operation;
        Settle();
        return operation;
    }

    /// <summary>Finishes every operation whose time has come.</summary>
    void Settle()
    {
        var now = DateTimeOffset.UtcNow;
        foreach (var operation in _operations.Values.Where(o => o.Status == "InProgress" && o.CompletesAt <= now))
        {
            operation.Status = operation.FailureCode is null ? "Succeeded" : "Failed";
            switch (operation.Kind)
            {
                case OperationKind.Create:
                    operation.Vm.ProvisioningState = operation.Status;
                    operation.Vm.FailureCode = operation.FailureCode;
                    break;
                case OperationKind.Delete:
                    operation.Vm.Deleted = true;
                    _vms.Remove(Key(operation.Vm.Subscription, operation.Vm.ResourceGroup, operation.Vm.Name));
                    // Only what was created with deleteOption Delete goes with the VM.
                    if (string.Equals(operation.Vm.NicDeleteOption, "Delete", StringComparison.OrdinalIgnoreCase))
                    {
                        _nics.Remove(operation.Vm.NicId);
                    }

                    break;
            }
        }
    }

    JsonObject VmJson(EmulatedVm vm)
    {
        var properties = vm.Body["properties"]?.DeepClone() as JsonObject ?? new JsonObject();
        properties["provisioningState"] = vm.ProvisioningState;
        properties["vmId"] = vm.VmId;
        var storage = properties["storageProfile"] as JsonObject ?? new JsonObject();
        properties["storageProfile"] = storage;
        var osDisk = storage["osDisk"] as JsonObject ?? new JsonObject { ["createOption"] = "FromImage" };
        storage["osDisk"] = osDisk;
        osDisk["osType"] = vm.OsType;
        osDisk["name"] = $"{vm.Name}_OsDisk";
        var network = properties["networkProfile"] as JsonObject ?? new JsonObject();
        properties["networkProfile"] = network;
        network["networkInterfaces"] = new JsonArray(new JsonObject
        {
            ["id"] = vm.NicId,
            ["properties"] = new JsonObject { ["primary"] = true, ["deleteOption"] = vm.NicDeleteOption ?? "Detach" },
        });
        var tags = new JsonObject();
        foreach (var (key, value) in vm.Tags)
        {
            tags[key] = value;
        }

        return new JsonObject
        {
            ["id"] = vm.Id,
            ["name"] = vm.Name,
            ["type"] = "Microsoft.Compute/virtualMachines",
            ["location"] = vm.Location,
            ["tags"] = tags,
            ["properties"] = properties,
        };
    }

    static JsonObject RunCommandResult(string osType, string stdout, string stderr)
    {
        // As Azure reports them: Windows as two component statuses, Linux as one message with sections.
        var value = osType == "Windows"
            ? new JsonArray(
                Status("ComponentStatus/StdOut/succeeded", stdout),
                Status("ComponentStatus/StdErr/succeeded", stderr))
            : new JsonArray(
                Status("ProvisioningState/succeeded", $"Enable succeeded: \n[stdout]\n{stdout}\n[stderr]\n{stderr}"));
        return new JsonObject { ["value"] = value };

        static JsonObject Status(string code, string message)
            => new() { ["code"] = code, ["level"] = "Info", ["displayStatus"] = "Provisioning succeeded",
                ["message"] = message };
    }

    static Dictionary<string, string> OperationHeaders(string baseUri, EmulatedVm vm, Operation operation,
        bool location)
    {
        var prefix = $"{baseUri}subscriptions/{vm.Subscription}/providers/Microsoft.Compute/locations/{vm.Location}";
        var headers = new Dictionary<string, string>
        {
            ["Azure-AsyncOperation"] = $"{prefix}/operations/{operation.Id}?api-version={ComputeApiVersion}",
        };
        if (location)
        {
            headers["Location"] = $"{prefix}/operationResults/{operation.Id}?api-version={ComputeApiVersion}";
        }

        return headers;
    }

    static ArmResponse NotFound(string type, string name, string resourceGroup)
        => ArmResponse.Error(404, "ResourceNotFound",
            $"The Resource '{type}/{name}' under resource group '{resourceGroup}' was not found.");

    static string Key(string subscription, string resourceGroup, string name)
        => $"{subscription}/{resourceGroup}/{name}";

    [GeneratedRegex(@"\b(?:[0-9A-Fa-f]{64}|[0-9A-Fa-f]{40})\b")]
    private static partial Regex HexWord();

    [GeneratedRegex(@"^\s*tagName eq '(?<name>[^']*)'(?:\s+and\s+tagValue eq '(?<value>[^']*)')?\s*$",
        RegexOptions.IgnoreCase)]
    private static partial Regex TagFilter();

    [GeneratedRegex(@"^\s*resourceType eq '(?<type>[^']*)'\s*$", RegexOptions.IgnoreCase)]
    private static partial Regex TypeFilter();

    enum OperationKind
    {
        Create,
        Delete,
        RunCommand,
    }

    sealed record Operation(string Id, OperationKind Kind, EmulatedVm Vm, DateTimeOffset StartedAt,
        DateTimeOffset? CompletesAt, string? FailureCode)
    {
        public string Status { get; set; } = "InProgress";
        public JsonObject? Result { get; set; }
    }
}
