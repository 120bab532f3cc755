using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace DynamicWorkers.LeaseSaga.Configuration;

/// <summary>
/// The pools as last validly configured. The framework's monitor drops its value before validating a reloaded one, so
/// one bad edit of appsettings.json would fail every message that reads the pools; here an invalid reload is logged and
/// ignored, and the next valid one applies. An invalid configuration at start still stops the host.
/// </summary>
public sealed class LastValidPoolsMonitor : IOptionsMonitor<PoolsOptions>, IDisposable
{
    readonly IOptionsFactory<PoolsOptions> _factory;
    readonly ILogger<LastValidPoolsMonitor> _logger;
    readonly List<IDisposable> _subscriptions = [];
    readonly Lock _listenersLock = new();
    readonly List<Action<PoolsOptions, string?>> _listeners = [];
    readonly Lazy<PoolsOptions> _first;
    PoolsOptions? _reloaded;

    public LastValidPoolsMonitor(
        IOptionsFactory<PoolsOptions> factory,
        IEnumerable<IOptionsChangeTokenSource<PoolsOptions>> sources,
        ILogger<LastValidPoolsMonitor> logger)
    {
        _factory = factory;
        _logger = logger;
        // Created on first use, so that an invalid start-up configuration fails the start-up validation, not this
        // constructor.
        _first = new Lazy<PoolsOptions>(() => factory.Create(Options.DefaultName));
        foreach (var source in sources)
        {
            _subscriptions.Add(ChangeToken.OnChange(source.GetChangeToken, Reload));
        }
    }

    public PoolsOptions CurrentValue => Volatile.Read(ref _reloaded) ?? _first.Value;

    public PoolsOptions Get(string? name) => CurrentValue;

    public IDisposable OnChange(Action<PoolsOptions, string?> listener)
    {
        lock (_listenersLock)
        {
            _listeners.Add(listener);
        }

        return new Subscription(this, listener);
    }

    void Reload()
    {
        PoolsOptions next;
        try
        {
            next = _factory.Create(Options.DefaultName);
        }
        catch (OptionsValidationException e)
        {
            _logger.LogError("Pools: the reloaded configuration is invalid and is not applied, "
                             + "the pools stay as they were: {Failures}",
                string.Join("; ", e.Failures));
            return;
        }

        Volatile.Write(ref _reloaded, next);
        Action<PoolsOptions, string?>[] listeners;
        lock (_listenersLock)
        {
            listeners = [.. _listeners];
        }

        foreach (var listener in listeners)
        {
            listener(next, Options.DefaultName);
        }
    }

    public void Dispose()
    {
        foreach (var subscription in _subscriptions)
        {
            subscription.Dispose();
        }
    }

    sealed class Subscription(LastValidPoolsMonitor monitor, Action<PoolsOptions, string?> listener) : IDisposable
    {
        public void Dispose()
        {
            lock (monitor._listenersLock)
            {
                monitor._listeners.Remove(listener);
            }
        }
    }
}
