namespace DynamicWorkers.ArmEmulator;

/// <summary>What the emulator gets wrong on purpose. Every knob can be changed while it runs.</summary>
public sealed class EmulatorFaults
{
    readonly object _gate = new();
    readonly List<InjectedFault> _injected = [];
    List<TaskCompletionSource> _heldPuts = [];

    /// <summary>Added before every ARM answer.</summary>
    public TimeSpan Latency { get; set; }

    /// <summary>How long a VM create takes; zero finishes within the SDK's first poll.</summary>
    public TimeSpan CreateDuration { get; set; }

    /// <summary>Creates stay <c>InProgress</c> and the VM <c>Creating</c> forever.</summary>
    public bool CreatesNeverFinish { get; set; }

    /// <summary>Creates end <c>Failed</c> with this ARM error code (e.g. <c>AllocationFailed</c>).</summary>
    public string? CreateFailureCode { get; set; }

    /// <summary>Every resource group answers 404 <c>ResourceGroupNotFound</c> (as when the setting names the wrong
    /// one).</summary>
    public bool ResourceGroupsMissing { get; set; }

    /// <summary>
    /// VM PUTs are held until this many are waiting together (or 10 s pass), so creates let through at once
    /// overlap at the emulator however the machine schedules them; zero holds nothing.
    /// </summary>
    public int VmPutsMeetInGroupsOf { get; set; }

    /// <summary>The trust script "fails" on the VM: the Run Command succeeds but prints only to stderr.</summary>
    public bool TrustScriptsFail { get; set; }

    /// <summary>
    /// The next <paramref name="count"/> ARM requests with this method whose path contains
    /// <paramref name="pathContains"/> (case-insensitive) get <paramref name="status"/> instead of an answer,
    /// with <c>Retry-After</c> when given (e.g. 429 with 1 s).
    /// </summary>
    public void Inject(string method, string pathContains, int status, int count = 1, int? retryAfterSeconds = null)
    {
        lock (_gate)
        {
            _injected.Add(new InjectedFault(method, pathContains, status, retryAfterSeconds) { Remaining = count });
        }
    }

    public void Reset()
    {
        lock (_gate)
        {
            _injected.Clear();
        }

        Latency = TimeSpan.Zero;
        VmPutsMeetInGroupsOf = 0;
        CreateDuration = TimeSpan.Zero;
        CreatesNeverFinish = false;
        CreateFailureCode = null;
        TrustScriptsFail = false;
        ResourceGroupsMissing = false;
    }

    internal async Task MeetOtherPutsAsync(CancellationToken cancellationToken)
    {
        var group = VmPutsMeetInGroupsOf;
        if (group <= 1)
        {
            return;
        }

        var arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            _heldPuts.Add(arrived);
            if (_heldPuts.Count >= group)
            {
                _heldPuts.ForEach(held => held.TrySetResult());
                _heldPuts = [];
            }
        }

        try
        {
            await arrived.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        }
        catch (TimeoutException)
        {
            // A lone PUT goes on after the deadline, so a cap of one shows as one in flight rather than hanging.
        }
    }

    internal InjectedFault? Take(string method, string path)
    {
        lock (_gate)
        {
            var fault = _injected.FirstOrDefault(f => f.Remaining > 0
                                                      && string.Equals(f.Method, method,
                                                          StringComparison.OrdinalIgnoreCase)
                                                      && path.Contains(f.PathContains,
                                                          StringComparison.OrdinalIgnoreCase));
            if (fault is not null)
            {
                fault.Remaining--;
            }

            return fault;
        }
    }
}

public sealed record InjectedFault(string Method, string PathContains, int Status, int? RetryAfterSeconds)
{
    public int Remaining { get; set; }
}
