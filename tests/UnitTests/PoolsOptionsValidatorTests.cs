using DynamicWorkers.LeaseSaga.Configuration;

namespace DynamicWorkers.UnitTests;

/// <summary>A pool definition is checked at start-up, the fair-share caps among the rest.</summary>
public sealed class PoolsOptionsValidatorTests
{
    [Fact]
    public void The_defaults_are_valid()
        => Assert.True(Validate(new PoolOptions { Image = "image" }).Succeeded);

    [Theory]
    [InlineData(0, 50, "MaxLeasesPerInstance")]
    [InlineData(100, 0, "MaxWaitingPerInstance")]
    [InlineData(100, 1001, "MaxWaitingPerInstance (1001) exceeds MaxWaiting (1000)")]
    public void A_fair_share_cap_out_of_range_or_above_the_pool_s_line_fails_naming_it(int maxLeases, int maxWaiting,
        string failure)
    {
        var result = Validate(
            new PoolOptions { Image = "image", MaxLeasesPerInstance = maxLeases, MaxWaitingPerInstance = maxWaiting });

        Assert.True(result.Failed);
        Assert.Contains(failure, result.FailureMessage);
    }

    [Theory]
    [InlineData(0, 1, "RolloutSurge")]
    [InlineData(101, 1, "RolloutSurge")]
    [InlineData(2, 513, "Image")]
    public void A_rollout_surge_out_of_range_or_an_overlong_image_fails_naming_it(int surge, int imageLength,
        string failure)
    {
        var result = Validate(new PoolOptions { Image = new string('i', imageLength), RolloutSurge = surge });

        Assert.True(result.Failed);
        Assert.Contains(failure, result.FailureMessage);
    }

    static Microsoft.Extensions.Options.ValidateOptionsResult Validate(PoolOptions pool)
        => new PoolsOptionsValidator().Validate(null, new PoolsOptions { Pools = { ["linux"] = pool } });
}
