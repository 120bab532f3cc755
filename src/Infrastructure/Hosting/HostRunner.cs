using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Infrastructure.Hosting;

public static class HostRunner
{
    /// <summary>Exit code of a host that refused to start because its configuration is invalid.</summary>
    public const int InvalidConfiguration = 2;

    /// <summary>
    /// Builds and runs a Generic Host (appsettings.json, then <c>Section__Key</c> environment variables, then
    /// the command line). A configuration error stops start-up with one clear line on stderr and exit code 2,
    /// so an operator sees at once which key to fix.
    /// </summary>
    public static async Task<int> RunAsync(string name, string[] args, Action<HostApplicationBuilder> configure)
    {
        try
        {
            var builder = Host.CreateApplicationBuilder(args);
            configure(builder);
            using var host = builder.Build();
            // Validate every ValidateOnStart option now, before the host would log the failure as a crash.
            host.Services.GetService<IStartupValidator>()?.Validate();
            await host.RunAsync();
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
    }
}
