using DynamicWorkers.Contracts;

namespace DynamicWorkers.UnitTests;

/// <summary>Only a plain SHA-1 or SHA-256 hex thumbprint may reach a command run on a worker.</summary>
public sealed class ThumbprintTests
{
    [Theory]
    [InlineData("0123456789ABCDEF0123456789ABCDEF01234567")]
    [InlineData("0123456789abcdef0123456789abcdef01234567")]
    [InlineData("0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF")]
    public void A_40_or_64_char_hex_thumbprint_is_valid(string thumbprint)
        => Assert.True(Thumbprint.IsValid(thumbprint));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("abc; rm -rf /")]
    [InlineData("0123456789ABCDEF0123456789ABCDEF0123456")] // 39
    [InlineData("0123456789ABCDEF0123456789ABCDEF012345678")] // 41
    [InlineData("0123456789ABCDEF0123456789ABCDEF0123456G")]
    [InlineData("0123456789ABCDEF0123456789ABCDEF0123456\n")]
    [InlineData("0123456789ABCDEF0123456789ABCDEF012345$(")]
    [InlineData("01 23 45 67 89 AB CD EF 01 23 45 67 89 AB")]
    [InlineData("０123456789ABCDEF0123456789ABCDEF01234567")] // full-width digit
    public void Anything_else_is_invalid(string? thumbprint)
        => Assert.False(Thumbprint.IsValid(thumbprint));
}
