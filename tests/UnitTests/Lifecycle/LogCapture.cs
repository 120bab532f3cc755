using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>A logger provider that keeps every record with its structured state (the template's named
/// values).</summary>
public sealed class LogCapture : ILoggerProvider
{
    public ConcurrentQueue<Record> Records { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    public sealed record Record(string Category, LogLevel Level, string Message,
        IReadOnlyDictionary<string, object?> Fields);

    sealed class Logger(LogCapture capture, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull
            => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter)
        {
            // The message template's values arrive as key/value pairs; "{OriginalFormat}" is the template itself.
            var fields = state is IEnumerable<KeyValuePair<string, object?>> pairs
                ? pairs.ToDictionary(p => p.Key, p => p.Value)
                : new Dictionary<string, object?>();
            capture.Records.Enqueue(new Record(category, logLevel, formatter(state, exception), fields));
        }
    }
}
