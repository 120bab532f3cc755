using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace DynamicWorkers.Cli;

/// <summary>
/// One RabbitMQ user's permissions in a virtual host: regular expressions over exchange and queue names.
/// </summary>
public sealed record Permissions(string Configure, string Write, string Read);

/// <summary>
/// The broker's users and what each may do (the table in docs/tenancy.md): the services may do anything,
/// the operator may send the public contract, an instance may send only its own requests and read only its own replies.
/// </summary>
public static class BrokerUsers
{
    public const string InstancePrefix = "instance-";
    public const string Operator = "dw-operator";

    /// <summary>Service user → the environment variable holding its password for <c>dw broker setup</c>.</summary>
    public static readonly IReadOnlyDictionary<string, string> Services = new Dictionary<string, string>
    {
        ["dw-lease-saga"] = "DW_LEASE_SAGA_PASSWORD",
        ["dw-provisioner"] = "DW_PROVISIONER_PASSWORD",
        ["dw-trust"] = "DW_TRUST_PASSWORD",
        ["dw-reaper"] = "DW_REAPER_PASSWORD",
    };

    public const string OperatorPasswordVariable = "DW_OPERATOR_PASSWORD";

    static readonly Permissions Everything = new(".*", ".*", ".*");

    /// <summary>The public messages an instance sends; everything else it publishes is refused by the broker.</summary>
    static readonly string[] InstanceMessages = ["LeaseRequested", "LeaseReleased", "GetWorkers", "GetLeases"];

    public static string InstanceUser(string instanceId) => InstancePrefix + instanceId;

    public static Permissions ServicePermissions => Everything;

    /// <summary>
    /// A service moves a message it cannot process to its <c>_error</c> queue, and redelivers one later, keeping the
    /// sender's <c>user_id</c>: RabbitMQ allows that only to an impersonator.
    /// </summary>
    public const string ServiceTags = "impersonator";

    /// <summary>
    /// The client's response queue and exchange are <c>user.&lt;32 hex&gt;</c> (see the client's identity setup).
    /// </summary>
    static string OwnQueues(string user) => Regex.Escape(user) + @"\.[0-9a-f]{32}";

    public static Permissions OperatorPermissions()
    {
        var own = OwnQueues(Operator);
        var send = $@"^({own}|DynamicWorkers\.Contracts:.*)$";
        return new Permissions(send, send, $"^{own}$");
    }

    public static Permissions InstancePermissions(string instanceId)
    {
        var own = OwnQueues(InstanceUser(instanceId));
        // Declaring an exchange needs "configure" as well as "write"; RabbitMQ ties delete to the same permission.
        var send = $@"^({own}|DynamicWorkers\.Contracts:({string.Join('|', InstanceMessages)}))$";
        return new Permissions(send, send, $"^{own}$");
    }

    public static string NewPassword() => Convert.ToHexString(RandomNumberGenerator.GetBytes(24)).ToLowerInvariant();
}

/// <summary>The RabbitMQ management HTTP API, as much as creating users takes, as an administrator.</summary>
public sealed class RabbitMqManagement : IDisposable
{
    readonly HttpClient _http;

    public RabbitMqManagement(Uri management, string username, string password)
    {
        _http = new HttpClient { BaseAddress = new Uri(management.GetLeftPart(UriPartial.Authority) + "/api/"),
            Timeout = TimeSpan.FromSeconds(30) };
        var basic = Convert.ToBase64String(Encoding.UTF8.GetBytes($"{username}:{password}"));
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", basic);
    }

    /// <summary>
    /// Creates the user or sets its password and tags (idempotent), then its permissions in <paramref name="vhost"/>.
    /// </summary>
    public async Task PutUserAsync(string vhost, string user, string password, string tags, Permissions permissions,
        CancellationToken cancellationToken)
    {
        await PutAsync($"users/{Uri.EscapeDataString(user)}", new { password, tags }, cancellationToken);
        await PutAsync(
            $"permissions/{Uri.EscapeDataString(vhost)}/{Uri.EscapeDataString(user)}",
            new { configure = permissions.Configure, write = permissions.Write, read = permissions.Read },
            cancellationToken);
    }

    /// <summary>
    /// Deletes the user (its connections are closed by the broker); a user already gone counts as deleted.
    /// </summary>
    public async Task DeleteUserAsync(string user, CancellationToken cancellationToken)
    {
        using var response = await _http.DeleteAsync($"users/{Uri.EscapeDataString(user)}", cancellationToken);
        if (response.StatusCode != HttpStatusCode.NotFound)
        {
            await EnsureAsync(response, cancellationToken);
        }
    }

    async Task PutAsync(string path, object body, CancellationToken cancellationToken)
    {
        using var response = await _http.PutAsJsonAsync(path, body, cancellationToken);
        await EnsureAsync(response, cancellationToken);
    }

    static async Task EnsureAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (!response.IsSuccessStatusCode)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            throw new HttpRequestException(
                $"RabbitMQ management API: {(int)response.StatusCode} {response.ReasonPhrase} {text}".Trim(), null,
                response.StatusCode);
        }
    }

    public void Dispose() => _http.Dispose();
}
