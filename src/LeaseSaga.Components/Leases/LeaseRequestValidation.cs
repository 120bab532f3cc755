using DynamicWorkers.Contracts;

namespace DynamicWorkers.LeaseSaga.Leases;

/// <summary>What makes a <see cref="LeaseRequested"/> acceptable, checked before anything else happens.</summary>
public static class LeaseRequestValidation
{
    public const int MaxInstanceIdLength = 200;
    public const int MaxTaskIdLength = 200;
    public const int MaxPoolLength = 64;
    public const int MaxThumbprintLength = 64;

    /// <summary>The rejection, or null when the request is fine. Details say what to fix.</summary>
    public static (string Reason, string Detail)? Check(LeaseRequested request, IReadOnlyCollection<string> pools)
    {
        if (request.LeaseId == Guid.Empty)
        {
            return (LeaseRejectionReasons.InvalidRequest, "LeaseId must be a non-empty GUID chosen by the instance");
        }

        if (string.IsNullOrWhiteSpace(request.InstanceId))
        {
            return (LeaseRejectionReasons.InvalidRequest, "InstanceId is empty");
        }

        if (request.InstanceId.Length > MaxInstanceIdLength)
        {
            return (LeaseRejectionReasons.InvalidRequest,
                $"InstanceId is {request.InstanceId.Length} characters; at most {MaxInstanceIdLength} are allowed");
        }

        if (!Thumbprint.IsValid(request.ServerThumbprint))
        {
            return (LeaseRejectionReasons.InvalidRequest,
                "ServerThumbprint must be the SHA-1 (40) or SHA-256 (64) hex thumbprint of the instance's certificate, "
                + "with no separators");
        }

        if (request.TaskId is { Length: > MaxTaskIdLength })
        {
            return (LeaseRejectionReasons.InvalidRequest,
                $"TaskId is {request.TaskId.Length} characters; at most {MaxTaskIdLength} are allowed");
        }

        if (string.IsNullOrWhiteSpace(request.Pool) || !pools.Contains(request.Pool, StringComparer.OrdinalIgnoreCase))
        {
            var known = string.Join(", ", pools.Order());
            return (LeaseRejectionReasons.UnknownPool,
                $"pool '{Shorten(request.Pool)}' does not exist; known pools: {known}");
        }

        return null;
    }

    /// <summary>
    /// A field of a request as it may be stored: cut to its column's length. Only a request that is rejected
    /// anyway carries a longer one, and storing it whole would fail the save (and retry it for minutes)
    /// instead of answering with the rejection.
    /// </summary>
    public static string Clip(string? value, int maxLength)
        => value is null ? "" : value.Length <= maxLength ? value : value[..maxLength];

    static string Shorten(string? value) => value is null ? "" : value.Length <= 64 ? value : value[..64] + "…";
}
