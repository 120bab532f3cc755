using DynamicWorkers.Contracts;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>docs/operations.md promises LeaseId, WorkerId and InstanceId as fields of the state-change lines, not only
/// in the text.</summary>
public sealed class StructuredLogTests
{
    [Fact]
    public async Task The_state_change_lines_of_a_lease_carry_LeaseId_WorkerId_and_InstanceId_as_fields()
    {
        var logs = new LogCapture();
        await using var bed = await StartAsync(hotTarget: 1, logs: logs);
        await bed.UntilWorkersAsync("Ready", 1);
        var leaseId = Guid.NewGuid();
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(leaseId, "instance-1"));
        await bed.ReleaseAsync(leaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);
        await bed.SettledAsync();

        var expected = new Dictionary<string, object?> { ["LeaseId"] = leaseId, ["WorkerId"] = granted.WorkerId,
            ["InstanceId"] = "instance-1" };
        foreach (var (category, template) in new[]
        {
            ("LeaseStateMachine", "Lease {LeaseId} of {InstanceId} granted worker {WorkerId}"),
            ("LeaseStateMachine", "Lease {LeaseId} of {InstanceId} released worker {WorkerId}"),
            ("Allocator", "Worker {WorkerId} of {Pool} leased (instance {InstanceId}, lease {LeaseId})"),
            ("Allocator", "Worker {WorkerId} of {Pool} idle (instance {InstanceId}, lease {LeaseId})"),
        })
        {
            var line = logs.Records.FirstOrDefault(r =>
                r.Category.EndsWith(category, StringComparison.Ordinal)
                && r.Fields.GetValueOrDefault("{OriginalFormat}") is string format
                    && format.StartsWith(template, StringComparison.Ordinal)
                && Equals(r.Fields.GetValueOrDefault("LeaseId"), leaseId));
            Assert.True(line is not null,
                $"no line '{template}' for lease {leaseId}:\n{string.Join("\n", logs.Records.Select(r => r.Message))}");
            foreach (var (key, value) in expected)
            {
                Assert.True(line.Fields.TryGetValue(key, out var actual) && Equals(actual, value),
                    $"{key} = {value} in '{line.Message}' ({string.Join(", ", line.Fields)})");
            }
        }

        // The request line, before any worker, already names the lease and the instance.
        var requested = Assert.Single(logs.Records,
            r => r.Message.StartsWith($"Lease {leaseId} requested", StringComparison.Ordinal));
        Assert.Equal("instance-1", requested.Fields["InstanceId"]);
        Assert.Equal(leaseId, requested.Fields["LeaseId"]);
    }
}
