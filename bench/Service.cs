using System.Diagnostics;
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

    public static Service Start(string project, string name, IEnumerable<KeyValuePair<string, string?>> settings, string logDirectory)
    {
        var directory = Path.Combine(Paths.RepositoryRoot, "src", project, "bin", Paths.BuildConfiguration, "net10.0");
        var dll = Path.Combine(directory, $"DynamicWorkers.{project}.dll");
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"{dll} is missing: build the solution first (dotnet build -c {Paths.BuildConfiguration})");
        }

        var info = new ProcessStartInfo("dotnet", [dll])
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
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

    /// <summary>Polls <c>/readyz</c> every 10 ms until it answers 200; fails if the process exits or the deadline passes.</summary>
    public async Task WaitUntilReadyAsync(TimeSpan deadline)
    {
        using var timeout = new CancellationTokenSource(deadline);
        var exited = _process.WaitForExitAsync(timeout.Token);
        var address = await Task.WhenAny(_address.Task, exited) == _address.Task
            ? await _address.Task
            : throw new InvalidOperationException($"{Name} exited with {(_process.HasExited ? _process.ExitCode : -1)} before serving HTTP (see its log)");
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

    /// <summary>Resident set size now, from /proc (Linux).</summary>
    public long RssBytes()
    {
        var status = File.ReadAllLines($"/proc/{_process.Id}/status");
        var line = status.First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }

    /// <summary>User plus system CPU time used so far, from /proc (Linux; clock ticks of 10 ms).</summary>
    public long CpuMilliseconds()
    {
        // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the 12th and 13th.
        var stat = File.ReadAllText($"/proc/{_process.Id}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11]) + long.Parse(fields[12])) * 10;
    }

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

    static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "DynamicWorkers.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("DynamicWorkers.sln not found above " + AppContext.BaseDirectory);
    }
}
