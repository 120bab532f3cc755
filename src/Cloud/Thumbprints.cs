namespace DynamicWorkers.Cloud;

public static class Thumbprints
{
    /// <summary>
    /// A certificate thumbprint as the service accepts it: SHA-1 (40) or SHA-256 (64) hex digits and nothing
    /// else. It ends up in a command run on the worker, so anything looser is an injection risk.
    /// </summary>
    public static bool IsValid(string? thumbprint)
        => thumbprint is { Length: 40 or 64 } && thumbprint.All(char.IsAsciiHexDigit);
}
