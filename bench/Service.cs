using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;

namespace DynamicWorkers.Bench;

/// <summary>
/// A deployable as its own OS process (its build output, configured by <c>Section__Key</c> environment variables),
/// its output kept in a log file. Knows how long it took to be ready and how much memory it holds.
/// </summary>
public sealed partial class Service : IAsyncDisposable
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    static readonly string? Gen0SizeOverride = Environment.GetEnvironmentVariable("DOTNET_GCgen0size");

    /// <summary>
    /// The young generation's budget a service gets: as docker-compose.yml builds its image (16 MB for LeaseSaga, the
    /// Dockerfile's 4 MB for the others), unless the bench was started with a value of its own, which every service
    /// then gets.
    /// </summary>
    public static string Gen0Size(string project) => Gen0SizeOverride
        ?? (project == "LeaseSaga" ? "0x1000000" : "0x400000");

    readonly Process _process;
    readonly StreamWriter _log;
    readonly TaskCompletionSource<Uri> _address = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly long _startedAt;

    Service(string name, Process process, StreamWriter log)
    {
        Name = name;
        _process = process;
        _log = log;
        _startedAt = Stopwatch.GetTimestamp();
    }

    public string Name { get; }

    /// <summary>From process start to the first <c>/readyz</c> 200.</summary>
    public TimeSpan ReadyAfter { get; private set; }

    public static Service Start(string project, string name, IEnumerable<KeyValuePair<string, string?>> settings,
        string logDirectory)
    {
        var directory = Paths.PublishedServices is { } published
            ? Path.Combine(published, project)
            : Path.Combine(Paths.RepositoryRoot, "src", project, "bin", Paths.BuildConfiguration, "net10.0");
        var dll = Path.Combine(directory, $"DynamicWorkers.{project}.dll");
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException(Paths.PublishedServices is null
                ? $"{dll} is missing: build the solution first (dotnet build -c {Paths.BuildConfiguration})"
                : $"{dll} is missing: publish the services there first (scripts/bench.sh does)");
        }

        var info = new ProcessStartInfo("dotnet", [dll])
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment["DOTNET_GCgen0size"] = Gen0Size(project);
        info.Environment["Logging__Console__FormatterName"] = "simple";
        info.Environment["Http__Port"] = "0";
        info.Environment["Http__Host"] = "127.0.0.1";
        foreach (var (key, value) in settings)
        {
            info.Environment[key.Replace(":", "__")] = value ?? "";
        }

        Directory.CreateDirectory(logDirectory);
        var log = new StreamWriter(Path.Combine(logDirectory, name + ".log")) { AutoFlush = false };
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var service = new Service(name, process, log);
        process.OutputDataReceived += (_, e) => service.Append(e.Data);
        process.ErrorDataReceived += (_, e) => service.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return service;
    }

    /// <summary>Polls <c>/readyz</c> every 10 ms until it answers 200; fails if the process exits or the deadline
    /// passes.</summary>
    public async Task WaitUntilReadyAsync(TimeSpan deadline)
    {
        using var timeout = new CancellationTokenSource(deadline);
        var exited = _process.WaitForExitAsync(timeout.Token);
        var address = await Task.WhenAny(_address.Task, exited) == _address.Task
            ? await _address.Task
            : throw new InvalidOperationException($"{Name} exited with {(_process.HasExited ? _process.ExitCode : -1)} "
                + "before serving HTTP (see its log)");
        var readyz = new Uri(address, "/readyz");
        while (true)
        {
            timeout.Token.ThrowIfCancellationRequested();
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"{Name} exited with {_process.ExitCode} (see its log)");
            }

            try
            {
                using var response = await Http.GetAsync(readyz, timeout.Token);
                if (response.IsSuccessStatusCode)
                {
                    ReadyAfter = Stopwatch.GetElapsedTime(_startedAt);
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }

            await Task.Delay(10, timeout.Token);
        }
    }

    /// <summary>Where it serves HTTP (known once it said so in its log).</summary>
    public Uri Address => _address.Task.IsCompletedSuccessfully ? _address.Task.Result
        : throw new InvalidOperationException($"{Name} has not said where it listens yet");

    /// <summary>Resident set size now and its parts, from /proc (Linux).</summary>
    public Rss Memory()
    {
        var status = File.ReadAllLines($"/proc/{_process.Id}/status");
        long Kilobytes(string field) =>
            long.Parse(status.First(l => l.StartsWith(field + ":", StringComparison.Ordinal))
                .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        return new Rss(Kilobytes("VmRSS") * 1024, Kilobytes("RssAnon") * 1024, Kilobytes("RssFile") * 1024,
            Kilobytes("RssShmem") * 1024);
    }

    /// <summary>User plus system CPU time used so far.</summary>
    public long CpuMilliseconds() => ProcessCpu.Milliseconds(_process.Id);

    public bool HasExited => _process.HasExited;

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        lock (_log)
        {
            _log.Dispose();
        }
    }

    void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        if (!_address.Task.IsCompleted && ListeningLine().Match(line) is { Success: true } match)
        {
            _address.TrySetResult(new Uri(match.Groups[1].Value));
        }

        lock (_log)
        {
            _log.WriteLine(line);
        }
    }

    [GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial Regex ListeningLine();
}

public static class Paths
{
    public static string BuildConfiguration { get; } = typeof(Paths).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "Configuration").Value!;

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    /// <summary>
    /// <c>DW_BENCH_SERVICES</c>: a folder with each service published in a subfolder of its name, run instead of the
    /// build output (scripts/bench.sh publishes them ReadyToRun there for a full run, as the Dockerfile does).
    /// </summary>
    public static string? PublishedServices { get; } =
        Environment.GetEnvironmentVariable("DW_BENCH_SERVICES") is { Length: > 0 } path ? path : null;

    static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory);
            directory is not null;
            directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "DynamicWorkers.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("DynamicWorkers.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>
/// MassTransit's own consume timings from a service's <c>/metrics</c>: total milliseconds and count per consumer
/// (saga or consumer type) and message type, so a section's share of each can be taken as a difference.
/// </summary>
public static partial class ConsumeTimings
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    public static async Task<IReadOnlyDictionary<string, (double Ms, double Count)>> ReadAsync(Service service)
    {
        var text = await Http.GetStringAsync(new Uri(service.Address, "/metrics"));
        var totals = new Dictionary<string, (double Ms, double Count)>();
        foreach (Match m in Line().Matches(text))
        {
            var labels = Label().Matches(m.Groups["labels"].Value)
                .ToDictionary(l => l.Groups[1].Value, l => l.Groups[2].Value);
            var key = $"{labels.GetValueOrDefault("messaging_masstransit_consumer_type")} "
                + $"← {labels.GetValueOrDefault("messaging_masstransit_message_type")?.Split(':').Last()}";
            var value = double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture);
            var (ms, count) = totals.GetValueOrDefault(key);
            totals[key] = m.Groups["part"].Value == "sum" ? (ms + value, count) : (ms, count + value);
        }

        return totals;
    }

    /// <summary>Average milliseconds and messages per consumer and message type between two readings, busiest
    /// first.</summary>
    public static IEnumerable<string> Between(IReadOnlyDictionary<string, (double Ms, double Count)> before,
        IReadOnlyDictionary<string, (double Ms, double Count)> after)
        => after.Select(a => (a.Key, Ms: a.Value.Ms - before.GetValueOrDefault(a.Key).Ms,
            Count: a.Value.Count - before.GetValueOrDefault(a.Key).Count))
            .Where(x => x.Count > 0)
            .OrderByDescending(x => x.Ms)
            .Take(8)
            .Select(x => $"{x.Key} {x.Count:0} × {x.Ms / x.Count:0.0} ms");

    // Saga messages are timed as saga_duration, consumer messages as consume_duration.
    [GeneratedRegex(
        """^messaging_masstransit_(?:saga|consume)_duration_milliseconds_(?<part>sum|count)\{(?<labels>[^}]*)\} (?<value>[0-9.eE+-]+)$""",
        RegexOptions.Multiline)]
    private static partial Regex Line();

    [GeneratedRegex(@"(\w+)=""([^""]*)""")]
    private static partial Regex Label();
}

/// <summary>A counter from a service's <c>/metrics</c>, summed over its series (every tag); 0 before anything
/// incremented it.</summary>
public static class PrometheusCounter
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    /// <summary>The optimistic-concurrency conflicts of the EF saga repository (tag <c>saga</c>).</summary>
    public const string SagaConflicts = "dw_saga_conflicts_total";

    public static async Task<double> SumAsync(Service service, string name)
    {
        var text = await Http.GetStringAsync(new Uri(service.Address, "/metrics"));
        var total = 0.0;
        foreach (var line in text.Split('\n'))
        {
            // name{labels} value [timestamp], or name value [timestamp]
            if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length == name.Length
                || line[name.Length] is not ('{' or ' '))
            {
                continue;
            }

            var afterLabels = line[name.Length] == '{' ? line.IndexOf('}', name.Length) + 1 : name.Length;
            var value = line[afterLabels..].Trim().Split(' ')[0];
            total += double.Parse(value, CultureInfo.InvariantCulture);
        }

        return total;
    }
}

/// <summary>
/// Resident memory: <see cref="Anonymous"/> is the GC heap and native allocations, <see cref="FilePages"/> the mapped
/// runtime, framework and dependency images, <see cref="Shared"/> mostly code the JIT wrote (double-mapped).
/// </summary>
public readonly record struct Rss(long Total, long Anonymous, long FilePages, long Shared)
{
    static string Mb(long bytes) => (bytes / 1024.0 / 1024).ToString("0", CultureInfo.InvariantCulture);

    public override string ToString()
        => $"{Mb(Total)} MB ({Mb(Anonymous)} anonymous + {Mb(FilePages)} file pages + {Mb(Shared)} JIT code)";
}
