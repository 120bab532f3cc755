namespace DynamicWorkers.Cli;

/// <summary>What a script can tell apart by <c>$?</c>; listed in <c>dw --help</c> and docs/operations.md.</summary>
public static class ExitCodes
{
    public const int Success = 0;
    public const int Failed = 1;
    public const int Usage = 2;
    public const int Rejected = 3;
    public const int TimedOut = 4;
    public const int Unreachable = 5;

    public const string Help = """
        Exit codes:
          0  success (with --wait: the lease was granted)
          1  unexpected failure
          2  usage error (bad or missing option, invalid thumbprint, ...): nothing was sent
          3  rejected (lease rejected, unknown pool)
          4  timed out: no answer within --timeout (a lease request may be repeated with the same --lease-id)
          5  RabbitMQ unreachable (refused, unknown host, bad credentials or virtual host)
        """;
}
