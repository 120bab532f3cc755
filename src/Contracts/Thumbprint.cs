namespace DynamicWorkers.Contracts;

/// <summary>The one definition of a valid certificate thumbprint, for instances and for the service alike.</summary>
public static class Thumbprint
{
    /// <summary>
    /// 40 (SHA-1) or 64 (SHA-256) hex characters and nothing else: the only thing that may ever reach a worker's trust
    /// script.
    /// </summary>
    public static bool IsValid(string? value) => value is { Length: 40 or 64 } && value.All(char.IsAsciiHexDigit);
}
