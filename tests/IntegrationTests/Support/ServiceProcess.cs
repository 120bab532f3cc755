using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;

namespace DynamicWorkers.IntegrationTests.Support;

/// <summary>
/// One of the deployables running as its own OS process (<c>dotnet</c> of its built output), configured
/// through <c>Section__Key</c> environment variables exactly as an operator would. Output is kept for diagnostics.
/// </summary>
public sealed partial class ServiceProcess : IAsyncDisposable
{
    readonly Process _process;
    readonly StringBuilder _output = new();

    ServiceProcess(Process process, string project)
    {
        _process = process;
        Project = project;
    }

    /// <summary>The deployable, e.g. <c>LeaseSaga</c>.</summary>
    public string Project { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>
    /// Starts <c>src/{project}</c>'s build output with the given settings (keys as in appsettings, e.g.
    /// <c>RabbitMq:Host</c>) and command-line arguments. It serves HTTP on a free loopback port unless the
    /// settings say otherwise; <see cref="HttpAddress"/> tells which.
    /// </summary>
    public static ServiceProcess Start(string project, IEnumerable<KeyValuePair<string, string?>> settings,
        params string[] args)
        => StartFrom("src", project, settings, args);

    /// <summary>The same for the build output of <c>{folder}/{project}</c>, e.g. <c>tests/ArmEmulator</c>.</summary>
    public static ServiceProcess StartFrom(string folder, string project,
        IEnumerable<KeyValuePair<string, string?>> settings, params string[] args)
    {
        var directory = Path.Combine(RepositoryRoot, folder, project, "bin", BuildConfiguration, "net10.0");
        var dll = Path.Combine(directory, $"DynamicWorkers.{project}.dll");
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"{dll} is missing: build the solution first");
        }

        var info = new ProcessStartInfo("dotnet", [dll, .. args])
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment["Logging__Console__FormatterName"] = "simple";
        // Several services run side by side: each on a port of its own.
        info.Environment["Http__Port"] = "0";
        info.Environment["Http__Host"] = "127.0.0.1";
        foreach (var (key, value) in settings)
        {
            info.Environment[key.Replace(":", "__")] = value ?? "";
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var service = new ServiceProcess(process, project);
        process.OutputDataReceived += (_, e) => service.Append(e.Data);
        process.ErrorDataReceived += (_, e) => service.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return service;
    }

    /// <summary>Waits until the host logged that it started (schema ready, bus connected), or fails with its
    /// output.</summary>
    public async Task WaitUntilStartedAsync(TimeSpan deadline)
    {
        await Eventually.True(
            () => Output.Contains("Application started", StringComparison.Ordinal) || HasExited,
            deadline,
            "the service to start",
            () => Output);
        if (HasExited)
        {
            throw new InvalidOperationException($"the service exited with {ExitCode}:\n{Output}");
        }
    }

    /// <summary>Where the started service serves HTTP (from Kestrel's "Now listening on" line).</summary>
    public Uri HttpAddress
    {
        get
        {
            var match = ListeningLine().Match(Output);
            return match.Success ? new Uri(match.Groups[1].Value)
                : throw new InvalidOperationException($"the service has not logged its HTTP address:\n{Output}");
        }
    }

    [GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial Regex ListeningLine();

    public async Task WaitForExitAsync(TimeSpan deadline)
    {
        // Awaited inside the using: the token source must live until the wait ends, or its deadline never fires.
        using var timeout = new CancellationTokenSource(deadline);
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new TimeoutException($"{Project} did not exit within {deadline.TotalSeconds:0} s\n{Output}");
        }
    }

    /// <summary>kill -9: no shutdown hooks, no flushing, as a crash or an OOM kill would.</summary>
    public void KillHard()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    public ValueTask DisposeAsync()
    {
        KillHard();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }

    void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    public static string BuildConfiguration { get; } = typeof(ServiceProcess).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "Configuration").Value!;

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory =
            directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "DynamicWorkers.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("DynamicWorkers.sln not found above " + AppContext.BaseDirectory);
    }
}
