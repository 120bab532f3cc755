using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Infrastructure.Hosting;

public static class HostRunner
{
    /// <summary>Exit code of a host that refused to start because its configuration is invalid.</summary>
    public const int InvalidConfiguration = 2;

    /// <summary>
    /// Exit code of a host stopped by anything else, e.g. the broker going away in the middle of its start.
    /// </summary>
    public const int Failed = 1;

    /// <summary>
    /// Builds and runs a host (appsettings.json, then <c>Section__Key</c> environment variables, then the command
    /// line) that serves <see cref="HttpSurface"/> plus whatever <paramref name="map"/> adds. A configuration error
    /// (or a port already taken) stops start-up with one clear line on stderr and exit code 2, so an operator sees
    /// at once which key to fix; any other failure with one line and exit code 1.
    /// </summary>
    public static async Task<int> RunAsync(
        string name, string[] args, Action<WebApplicationBuilder> configure, Action<WebApplication>? map = null)
    {
        try
        {
            var builder = WebApplication.CreateBuilder(
                new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
            // Hosted services start together once the schema is up to date (the StartingAsync step, before any start)
            // so the bus connecting, Quartz reading its tables and Kestrel binding overlap; nothing acts early, since
            // Quartz fires and the pool reconciler publishes only once the host (bus included) has started, and they
            // still stop one at a time in reverse order (Quartz before the bus).
            builder.Services.Configure<HostOptions>(o => o.ServicesStartConcurrently = true);
            configure(builder);
            // After configure: a host may add configuration defaults (Standalone's transport and database).
            builder.AddHttpSurface();
            await using var app = builder.Build();
            // Validate every ValidateOnStart option now, before the host would log the failure as a crash.
            app.Services.GetService<IStartupValidator>()?.Validate();
            using var early = new CancellationTokenSource();
            try
            {
                foreach (var step in app.Services.GetServices<IEarlyStartupStep>())
                {
                    step.Begin(early.Token);
                }

                app.MapHttpSurface();
                map?.Invoke(app);
                await app.RunAsync();
            }
            finally
            {
                // An early step the host never came to wait for (it failed first) stops before the app is disposed.
                await early.CancelAsync();
            }

            return 0;
        }
        catch (OptionsValidationException e)
        {
            await Console.Error.WriteLineAsync($"{name}: invalid configuration: {string.Join("; ", e.Failures)}");
            return InvalidConfiguration;
        }
        catch (InvalidOperationException e) when (e.Source == "Microsoft.Extensions.Configuration.Binder")
        {
            // A value of the wrong type, e.g. Database:Provider=Oracle.
            await Console.Error.WriteLineAsync($"{name}: invalid configuration: {e.Message}");
            return InvalidConfiguration;
        }
        catch (IOException e) when (e.InnerException is AddressInUseException)
        {
            await Console.Error.WriteLineAsync(
                $"{name}: cannot serve HTTP: {e.Message} (set Http:Port to a free port)");
            return InvalidConfiguration;
        }
        catch (Exception e)
        {
            // The host has logged it in full, so the orchestrator that starts the service again gets one line and a
            // plain exit code rather than an unhandled exception that aborts the process.
            await Console.Error.WriteLineAsync($"{name}: stopped: {e.GetType().Name}: {e.Message}");
            return Failed;
        }
    }
}
