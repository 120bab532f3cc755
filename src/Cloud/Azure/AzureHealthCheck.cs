using global::Azure;
using global::Azure.Core;
using global::Azure.Identity;
using global::Azure.ResourceManager;
using global::Azure.ResourceManager.Resources;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Cloud.Azure;

/// <summary>
/// Readiness: the credential gets a token and the workers' resource group can be read, which proves the
/// endpoint, subscription, resource group and sign-in together. The answer is kept for 30 s so probes do not
/// spend the subscription's ARM read budget.
/// </summary>
public sealed class AzureHealthCheck(ArmClient arm, IOptions<AzureCloudOptions> options, TimeProvider clock)
    : IHealthCheck
{
    static readonly TimeSpan KeepFor = TimeSpan.FromSeconds(30);

    // One reference, swapped whole: concurrent probes never see half an answer.
    volatile Answer? _last;

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context,
        CancellationToken cancellationToken = default)
    {
        if (_last is { } last && clock.GetUtcNow() - last.At < KeepFor)
        {
            return last.Result;
        }

        var result = await ProbeAsync(cancellationToken);
        _last = new Answer(result, clock.GetUtcNow());
        return result;
    }

    sealed record Answer(HealthCheckResult Result, DateTimeOffset At);

    async Task<HealthCheckResult> ProbeAsync(CancellationToken cancellationToken)
    {
        var o = options.Value;
        try
        {
            var group = await arm
                .GetResourceGroupResource(
                    ResourceGroupResource.CreateResourceIdentifier(o.SubscriptionId, o.ResourceGroup))
                .GetAsync(cancellationToken);
            return HealthCheckResult.Healthy(
                $"resource group {group.Value.Data.Name} in {group.Value.Data.Location} readable");
        }
        catch (RequestFailedException e)
        {
            return HealthCheckResult.Unhealthy(
                $"Azure Resource Manager: {(e.ErrorCode is { Length: > 0 } code ? code : $"HTTP {e.Status}")} "
                + $"reading resource group {o.ResourceGroup}", e);
        }
        catch (AuthenticationFailedException e)
        {
            return HealthCheckResult.Unhealthy($"Azure sign-in ({o.Credential}) failed: {e.Message}", e);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return HealthCheckResult.Unhealthy($"Azure Resource Manager at {o.Endpoint} unreachable: {e.Message}", e);
        }
    }
}
