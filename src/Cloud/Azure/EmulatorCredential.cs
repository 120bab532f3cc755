using System.Net.Http.Json;
using System.Text.Json.Serialization;
using global::Azure.Core;

namespace DynamicWorkers.Cloud.Azure;

/// <summary>
/// Tests only (<c>Cloud:Azure:Credential = Emulator</c>): asks the ARM emulator's token endpoint for a bearer
/// token, over the same transport as the ARM calls. Real Azure has no such endpoint, so this cannot sign in there.
/// </summary>
public sealed class EmulatorCredential(Uri endpoint, HttpMessageHandler handler) : TokenCredential
{
    readonly HttpClient _http = new(handler, disposeHandler: false) { BaseAddress = endpoint };

    public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken)
        => GetTokenAsync(requestContext, cancellationToken).AsTask().GetAwaiter().GetResult();

    public override async ValueTask<AccessToken> GetTokenAsync(TokenRequestContext requestContext,
        CancellationToken cancellationToken)
    {
        using var response = await _http.PostAsync("emulator/token", null, cancellationToken);
        response.EnsureSuccessStatusCode();
        var token = await response.Content.ReadFromJsonAsync<TokenResponse>(cancellationToken)
                    ?? throw new InvalidOperationException("the emulator's token endpoint answered nothing");
        return new AccessToken(token.AccessToken, DateTimeOffset.UtcNow.AddSeconds(token.ExpiresIn));
    }

    sealed record TokenResponse(
        [property: JsonPropertyName("access_token")] string AccessToken,
        [property: JsonPropertyName("expires_in")] int ExpiresIn);
}
