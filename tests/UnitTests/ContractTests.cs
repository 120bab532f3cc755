using System.Text.Json;
using DynamicWorkers.Contracts;
using MassTransit;
using MassTransit.Serialization;

namespace DynamicWorkers.UnitTests;

/// <summary>The public contract of DESIGN.md, field by field: a rename here breaks every instance on the
/// wire.</summary>
public sealed class ContractTests
{
    public static TheoryData<Type, string> Messages => new()
    {
        { typeof(LeaseRequested), "Guid LeaseId, String InstanceId, String ServerThumbprint, String Pool, String? "
            + "TaskId, DateTimeOffset RequestedAt" },
        { typeof(LeaseGranted), "Guid LeaseId, String InstanceId, Guid WorkerId, String WorkerAddress, String "
            + "WorkerThumbprint, Boolean Reused, DateTimeOffset GrantedAt, DateTimeOffset ExpiresAt" },
        { typeof(LeaseRejected), "Guid LeaseId, String InstanceId, String Reason, String Detail" },
        { typeof(LeaseReleased), "Guid LeaseId, String InstanceId" },
        { typeof(LeaseRevoked), "Guid LeaseId, String InstanceId, Guid WorkerId, String Reason" },
        { typeof(SetInstanceLifecycle),
            "String InstanceId, TimeSpan? IdleTimeout, TimeSpan? MaxWorkerAge, TimeSpan? MaxLeaseDuration" },
        { typeof(SetPoolSize), "String Pool, Int32 HotTarget, Int32 MaxWorkers" },
        { typeof(SetPoolImage), "String Pool, String Image" },
        { typeof(GetPoolStatus), "String? Pool" },
        { typeof(PoolStatus), "IReadOnlyList<PoolSummary> Pools" },
        { typeof(GetWorkers), "String? Pool, String? InstanceId" },
        { typeof(WorkerList), "IReadOnlyList<WorkerSummary> Workers" },
        { typeof(GetLeases), "String? Pool, String? InstanceId" },
        { typeof(LeaseList), "IReadOnlyList<LeaseSummary> Leases" },
    };

    [Theory]
    [MemberData(nameof(Messages))]
    public void Each_message_has_its_pinned_urn(Type message, string _)
    {
        Assert.Equal($"urn:message:DynamicWorkers.Contracts:{message.Name}", MessageUrn.ForTypeString(message));
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void Each_message_has_exactly_the_designed_fields(Type message, string fields)
    {
        Assert.Equal(fields, Describe(message));
    }

    [Fact]
    public void Pool_and_worker_summaries_have_the_designed_fields()
    {
        Assert.Equal(
            "String Pool, IReadOnlyDictionary<String,Int32> WorkersByState, Int32 HotTarget, Int32 MaxWorkers, Int32 "
                + "WaitingLeases, String Image, IReadOnlyList<String> Tools, Int32 OutdatedWorkers",
            Describe(typeof(PoolSummary)));
        Assert.Equal(
            "Guid WorkerId, String Pool, String State, String? TrustedInstanceId, Guid? CurrentLeaseId, DateTimeOffset "
                + "ProvisionedAt, DateTimeOffset? LastLeaseEndedAt, Int32 LeaseCount",
            Describe(typeof(WorkerSummary)));
    }

    [Fact]
    public void Messages_travel_as_camel_case_json_and_null_lifecycle_fields_stay_null()
    {
        var json = JsonSerializer.SerializeToElement(
            new SetInstanceLifecycle("instance-1", TimeSpan.FromMinutes(5), null, null),
            SystemTextJsonMessageSerializer.Options);
        Assert.Equal(["instanceId", "idleTimeout", "maxWorkerAge", "maxLeaseDuration"],
            json.EnumerateObject().Select(p => p.Name));
        Assert.Equal("00:05:00", json.GetProperty("idleTimeout").GetString());

        var parsed = JsonSerializer.Deserialize<SetInstanceLifecycle>(
            """{"instanceId":"i","idleTimeout":null,"maxWorkerAge":"3.00:00:00"}""",
            SystemTextJsonMessageSerializer.Options)!;
        Assert.Null(parsed.IdleTimeout);
        Assert.Equal(TimeSpan.FromDays(3), parsed.MaxWorkerAge);
        Assert.Null(parsed.MaxLeaseDuration);
    }

    [Fact]
    public void Reason_constants_match_the_design()
    {
        Assert.Equal(
            ["InvalidRequest", "UnknownPool", "NoCapacity", "LeaseIdConflict", "InstanceLimit"],
            [LeaseRejectionReasons.InvalidRequest, LeaseRejectionReasons.UnknownPool, LeaseRejectionReasons.NoCapacity,
                LeaseRejectionReasons.LeaseIdConflict, LeaseRejectionReasons.InstanceLimit]);
        Assert.Equal(
            ["MaxLeaseDuration", "MaxWorkerAge", "WorkerLost"],
            [LeaseRevocationReasons.MaxLeaseDuration, LeaseRevocationReasons.MaxWorkerAge,
                LeaseRevocationReasons.WorkerLost]);
    }

    static string Describe(Type type)
    {
        var nullability = new System.Reflection.NullabilityInfoContext();
        return string.Join(", ", type.GetProperties()
            .Select(p => $"{TypeName(p.PropertyType)}{(IsNullableReference(p) ? "?" : "")} {p.Name}"));

        bool IsNullableReference(System.Reflection.PropertyInfo p)
            => !p.PropertyType.IsValueType
                && nullability.Create(p).ReadState == System.Reflection.NullabilityState.Nullable;
    }

    static string TypeName(Type type)
    {
        if (Nullable.GetUnderlyingType(type) is { } inner)
        {
            return TypeName(inner) + "?";
        }

        if (!type.IsGenericType)
        {
            return type.Name;
        }

        var name = type.Name[..type.Name.IndexOf('`')];
        return $"{name}<{string.Join(",", type.GetGenericArguments().Select(TypeName))}>";
    }
}
