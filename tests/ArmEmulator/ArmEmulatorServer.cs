using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.ArmEmulator;

/// <summary>One request as the emulator received it, with the status it answered: <see cref="At"/> when answered,
/// <see cref="ReceivedAt"/> when it came in.</summary>
public sealed record RecordedRequest(DateTimeOffset At, string Method, string Path, string Query, string Body,
    int Status, DateTimeOffset ReceivedAt);

/// <summary>
/// Just enough Azure Resource Manager for the Azure adapter, over HTTPS on 127.0.0.1 with a self-signed
/// certificate made at start: VM PUT/PATCH/GET/DELETE/list with async operations, the instance view, Run Command, NIC
/// GET, resource group GET, the generic resource list with ARM's tag filter, and a token endpoint for the test
/// credential. Paths match case-insensitively, as ARM does. It records every request and takes faults
/// (<see cref="Faults"/>). Start it in-process, or as its own process (<c>Program.cs</c>).
/// </summary>
public sealed partial class ArmEmulatorServer : IAsyncDisposable
{
    readonly WebApplication _app;
    readonly List<RecordedRequest> _requests = [];

    ArmEmulatorServer(WebApplication app, X509Certificate2 certificate, Uri uri)
    {
        _app = app;
        Uri = uri;
        CertificateThumbprint = certificate.GetCertHashString(HashAlgorithmName.SHA256);
        State = new ArmState(Faults);
    }

    /// <summary>The base address, e.g. <c>https://127.0.0.1:43817/</c>.</summary>
    public Uri Uri { get; }

    /// <summary>SHA-256 of the self-signed server certificate, for
    /// <c>Cloud:Azure:TrustedCertificateThumbprint</c>.</summary>
    public string CertificateThumbprint { get; }

    /// <summary>The only bearer token ARM requests are accepted with; handed out by <c>POST
    /// /emulator/token</c>.</summary>
    public string Token { get; } = "emulator-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(16));

    public EmulatorFaults Faults { get; } = new();

    public ArmState State { get; }

    public IReadOnlyList<RecordedRequest> Requests { get { lock (_requests) { return _requests.ToList(); } } }

    public static async Task<ArmEmulatorServer> StartAsync(int port = 0)
    {
        var certificate = CreateCertificate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(
            k => k.Listen(IPAddress.Loopback, port, listen => listen.UseHttps(certificate)));
        var app = builder.Build();

        ArmEmulatorServer? server = null;
        app.Run(context => server!.HandleAsync(context));
        await app.StartAsync();

        var address =
            app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        server = new ArmEmulatorServer(app, certificate, new Uri(address.TrimEnd('/') + "/"));
        return server;
    }

    /// <summary>Until the process is told to stop (Ctrl+C, SIGTERM): the host's console lifetime handles
    /// both.</summary>
    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    public void ClearRequests()
    {
        lock (_requests)
        {
            _requests.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var receivedAt = DateTimeOffset.UtcNow;
        var path = request.Path.Value ?? "/";
        var body = await new StreamReader(request.Body).ReadToEndAsync(context.RequestAborted);

        var response = await AnswerAsync(request.Method, path, request.Query["$filter"].ToString(),
            request.Headers.Authorization.ToString(), body, context.RequestAborted);
        lock (_requests)
        {
            _requests.Add(new RecordedRequest(DateTimeOffset.UtcNow, request.Method, path,
                request.QueryString.Value ?? "", body, response.Status, receivedAt));
        }

        context.Response.StatusCode = response.Status;
        foreach (var (name, value) in response.Headers ?? new Dictionary<string, string>())
        {
            context.Response.Headers[name] = value;
        }

        context.Response.Headers["x-ms-request-id"] = Guid.NewGuid().ToString();
        if (response.Body is not null)
        {
            context.Response.ContentType = "application/json; charset=utf-8";
            await context.Response.WriteAsync(response.Body.ToJsonString(), context.RequestAborted);
        }
    }

    async Task<ArmResponse> AnswerAsync(string method, string path, string filter, string authorization, string body,
        CancellationToken cancellationToken)
    {
        if (path.Equals("/emulator/token", StringComparison.OrdinalIgnoreCase) && method == "POST")
        {
            return new ArmResponse(200,
                new JsonObject { ["access_token"] = Token, ["expires_in"] = 3600, ["token_type"] = "Bearer" });
        }

        if (path.Equals("/emulator/state", StringComparison.OrdinalIgnoreCase) && method == "GET")
        {
            return new ArmResponse(200, State.Snapshot());
        }

        if (authorization != $"Bearer {Token}")
        {
            return ArmResponse.Error(401, "AuthenticationFailed", "Authentication failed: no valid bearer token.");
        }

        if (Faults.Latency > TimeSpan.Zero)
        {
            await Task.Delay(Faults.Latency, cancellationToken);
        }

        if (Faults.Take(method, path) is { } fault)
        {
            var headers = fault.RetryAfterSeconds is { } seconds
                ? new Dictionary<string, string> { ["Retry-After"] = seconds.ToString() } : null;
            var code = fault.Status == 429 ? "TooManyRequests" : fault.Status >= 500
                ? "InternalServerError" : "InjectedFault";
            return ArmResponse.Error(fault.Status, code, "Injected by the emulator.") with { Headers = headers };
        }

        var baseUri = Uri.ToString();
        var json = body.Length > 0 ? JsonNode.Parse(body) as JsonObject : null;
        if (VmPath().Match(path) is { Success: true } vm)
        {
            var (subscription, group, name) = (vm.Groups["sub"].Value, vm.Groups["rg"].Value, vm.Groups["name"].Value);
            if (method == "PUT")
            {
                await Faults.MeetOtherPutsAsync(cancellationToken);
            }

            return method switch
            {
                "PUT" => State.PutVm(baseUri, subscription, group, name, json),
                "GET" => State.GetVm(subscription, group, name),
                "PATCH" => State.PatchVm(subscription, group, name, json),
                "DELETE" => State.DeleteVm(baseUri, subscription, group, name),
                _ => MethodNotAllowed(),
            };
        }

        if (InstanceViewPath().Match(path) is { Success: true } view && method == "GET")
        {
            return State.GetInstanceView(view.Groups["sub"].Value, view.Groups["rg"].Value, view.Groups["name"].Value);
        }

        if (VmListPath().Match(path) is { Success: true } list && method == "GET")
        {
            return State.ListVms(list.Groups["sub"].Value, list.Groups["rg"].Value);
        }

        if (ResourceListPath().Match(path) is { Success: true } resources && method == "GET")
        {
            return State.ListResources(resources.Groups["sub"].Value, resources.Groups["rg"].Value, filter);
        }

        if (RunCommandPath().Match(path) is { Success: true } run && method == "POST")
        {
            return State.RunCommand(baseUri, run.Groups["sub"].Value, run.Groups["rg"].Value, run.Groups["name"].Value,
                json);
        }

        if (NicPath().Match(path) is { Success: true } nic && method == "GET")
        {
            return State.GetNic(nic.Groups["sub"].Value, nic.Groups["rg"].Value, nic.Groups["name"].Value);
        }

        if (ResourceGroupPath().Match(path) is { Success: true } resourceGroup && method == "GET")
        {
            var name = resourceGroup.Groups["rg"].Value;
            return Faults.ResourceGroupsMissing
                ? ArmResponse.Error(404, "ResourceGroupNotFound", $"Resource group '{name}' could not be found.")
                : new ArmResponse(200, new JsonObject
                {
                    ["id"] = $"/subscriptions/{resourceGroup.Groups["sub"].Value}/resourceGroups/{name}",
                    ["name"] = name,
                    ["type"] = "Microsoft.Resources/resourceGroups",
                    ["location"] = "westeurope",
                    ["properties"] = new JsonObject { ["provisioningState"] = "Succeeded" },
                });
        }

        if (OperationPath().Match(path) is { Success: true } operation && method == "GET")
        {
            return operation.Groups["kind"].Value.Equals("operations", StringComparison.OrdinalIgnoreCase)
                ? State.OperationStatus(operation.Groups["id"].Value)
                : State.OperationResult(baseUri, operation.Groups["id"].Value);
        }

        return ArmResponse.Error(404, "NotEmulated", $"{method} {path} is not part of the emulator.");
    }

    static ArmResponse MethodNotAllowed() => ArmResponse.Error(405, "MethodNotAllowed", "Not emulated.");

    /// <summary>RSA 2048, valid for a month, with 127.0.0.1 and localhost as subject alternative names.</summary>
    static X509Certificate2 CreateCertificate()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=DynamicWorkers ARM emulator", key, HashAlgorithmName.SHA256,
            RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(
            new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], critical: false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
    }

    const string ResourceGroupPrefix = "^/subscriptions/(?<sub>[^/]+)/resourcegroups/(?<rg>[^/]+)/providers/";

    [GeneratedRegex(ResourceGroupPrefix + @"microsoft\.compute/virtualmachines/(?<name>[^/]+)$",
        RegexOptions.IgnoreCase)]
    private static partial Regex VmPath();

    [GeneratedRegex(ResourceGroupPrefix + @"microsoft\.compute/virtualmachines/?$", RegexOptions.IgnoreCase)]
    private static partial Regex VmListPath();

    [GeneratedRegex(ResourceGroupPrefix + @"microsoft\.compute/virtualmachines/(?<name>[^/]+)/runcommand$",
        RegexOptions.IgnoreCase)]
    private static partial Regex RunCommandPath();

    [GeneratedRegex(ResourceGroupPrefix + @"microsoft\.compute/virtualmachines/(?<name>[^/]+)/instanceview$",
        RegexOptions.IgnoreCase)]
    private static partial Regex InstanceViewPath();

    [GeneratedRegex(ResourceGroupPrefix + @"microsoft\.network/networkinterfaces/(?<name>[^/]+)$",
        RegexOptions.IgnoreCase)]
    private static partial Regex NicPath();

    [GeneratedRegex(@"^/subscriptions/(?<sub>[^/]+)/resourcegroups/(?<rg>[^/]+)/resources/?$", RegexOptions.IgnoreCase)]
    private static partial Regex ResourceListPath();

    [GeneratedRegex(@"^/subscriptions/(?<sub>[^/]+)/resourcegroups/(?<rg>[^/]+)$", RegexOptions.IgnoreCase)]
    private static partial Regex ResourceGroupPath();

    [GeneratedRegex(
        @"^/subscriptions/[^/]+/providers/microsoft\.compute/locations/[^/]+/(?<kind>operations|operationresults)/(?<id>[^/]+)$",
        RegexOptions.IgnoreCase)]
    private static partial Regex OperationPath();
}
