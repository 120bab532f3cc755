using Microsoft.Extensions.Logging;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// The logger factory EF Core logs through: the host's, except that a conflict (<see cref="DbConflicts"/>: a
/// duplicate-key insert, a lost version race, a busy SQLite file) is logged at Debug. EF Core logs a duplicate-key
/// insert as a failed save, at Error with the stack; for a saga that is a race another message won, which the endpoint
/// retries at once, so it is no error for an operator to read. The exception still reaches the code that saved, and a
/// conflict that is not retried away ends in the endpoint's <c>_error</c> queue and its log.
/// </summary>
public sealed class ConflictsAtDebug(ILoggerFactory host) : ILoggerFactory
{
    public ILogger CreateLogger(string categoryName) => new Logger(host.CreateLogger(categoryName));

    public void AddProvider(ILoggerProvider provider) => host.AddProvider(provider);

    public void Dispose()
    {
        // The host's factory is the host's to dispose.
    }

    sealed class Logger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull
            => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter)
        {
            if (logLevel > LogLevel.Debug && exception is not null && DbConflicts.IsConflict(exception))
            {
                logLevel = LogLevel.Debug;
            }

            if (inner.IsEnabled(logLevel))
            {
                inner.Log(logLevel, eventId, state, exception, formatter);
            }
        }
    }
}
