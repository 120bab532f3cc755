using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.LeaseSaga.Persistence;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Workers;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>Image rollout (<c>SetPoolImage</c>, a changed <c>Pools:&lt;name&gt;:Image</c>): workers of an older image
/// are replaced without a gap.</summary>
public sealed class ImageRolloutTests
{
    const string ConfiguredImage = "test-image";
    const string NewImage = "test-image-v2";

    static Action<IDictionary<string, string?>> Surge(int surge, string image = ConfiguredImage) => settings =>
    {
        settings[$"Pools:{Pool}:RolloutSurge"] = surge.ToString();
        settings[$"Pools:{Pool}:Image"] = image;
    };

    [Fact]
    public async Task Hot_workers_are_replaced_within_the_surge_and_the_hot_pool_never_drops_below_its_target()
    {
        await using var bed = await StartAsync(hotTarget: 3, maxWorkers: 10, settings: Surge(1));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 3);
        bed.Cloud.HoldProvisioning = true;

        await bed.Bus.Publish(new SetPoolImage(Pool, NewImage));
        for (var replaced = 0; replaced < 3; replaced++)
        {
            await Until(() => !bed.Cloud.Held.IsEmpty, $"replacement {replaced + 1} started");
            await bed.SettledAsync();
            var workers = await bed.WorkersAsync();
            Assert.Equal(1, workers.Count(w => w.CurrentState == WorkerStates.Provisioning));
            Assert.Equal(3, workers.Count(w => w.CurrentState == WorkerStates.Ready));
            Assert.True(bed.Cloud.Held.TryDequeue(out var held));
            Assert.Equal(NewImage, held.Image);

            await bed.Bus.Publish(
                new WorkerProvisioned(held.WorkerId, "10.0.1.1:10933", new string('A', 40), bed.Clock.GetUtcNow()));
            await Until(() => bed.Cloud.Deprovisioned.Count(d => d.Reason == ReapReasons.Image) == replaced + 1,
                "an old hot worker retired");
            await bed.SettledAsync();
            Assert.Equal(3, await bed.WorkersInAsync(WorkerStates.Ready));
        }

        await bed.SettledAsync();
        var final = await bed.WorkersAsync();
        Assert.Equal(3, final.Count);
        Assert.All(final, w => Assert.Equal((WorkerStates.Ready, NewImage), (w.CurrentState, w.Image)));
        Assert.Empty(bed.Cloud.Held);
        Assert.Equal(0, (await StatusAsync(bed)).OutdatedWorkers);
    }

    [Fact]
    public async Task Hot_claims_prefer_the_pool_s_current_image()
    {
        await using var bed = await StartAsync(hotTarget: 2, maxWorkers: 10, settings: Surge(1));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 2);
        bed.Cloud.HoldProvisioning = true;
        await bed.Bus.Publish(new SetPoolImage(Pool, NewImage));
        await Until(() => !bed.Cloud.Held.IsEmpty, "the first replacement started");
        Assert.True(bed.Cloud.Held.TryDequeue(out var first));
        // Provisioned later than the old hot workers: the oldest-first claim alone would pick an old one.
        await bed.Bus.Publish(new WorkerProvisioned(first.WorkerId, "10.0.1.1:10933", new string('A', 40),
            bed.Clock.GetUtcNow() + TimeSpan.FromMinutes(1)));
        // Surge 1: one old hot worker is replaced, the other stays while its replacement is held.
        await Until(() => bed.Cloud.Deprovisioned.Count(d => d.Reason == ReapReasons.Image) == 1,
            "the first old hot worker replaced");
        await Until(() => !bed.Cloud.Held.IsEmpty, "the second replacement started");
        await bed.SettledAsync();

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));

        Assert.Equal(NewImage, (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).Image);
    }

    [Fact]
    public async Task At_max_workers_old_hot_workers_make_room_for_their_replacements_a_surge_at_a_time()
    {
        await using var bed = await StartAsync(hotTarget: 3, maxWorkers: 3, settings: Surge(1));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 3);
        bed.Cloud.HoldProvisioning = true;

        await bed.Bus.Publish(new SetPoolImage(Pool, NewImage));
        for (var replaced = 0; replaced < 3; replaced++)
        {
            await Until(() => !bed.Cloud.Held.IsEmpty, $"replacement {replaced + 1} started");
            await bed.SettledAsync();
            var live = (await bed.WorkersAsync()).Where(w => WorkerStates.Live.Contains(w.CurrentState)).ToList();
            Assert.Equal(3, live.Count);
            Assert.Equal(2, live.Count(w => w.CurrentState == WorkerStates.Ready));
            Assert.True(bed.Cloud.Held.TryDequeue(out var held));
            await bed.Bus.Publish(
                new WorkerProvisioned(held.WorkerId, "10.0.1.1:10933", new string('A', 40), bed.Clock.GetUtcNow()));
            await bed.SettledAsync();
        }

        await bed.UntilWorkersAsync(WorkerStates.Ready, 3);
        Assert.All(await bed.WorkersAsync(), w => Assert.Equal(NewImage, w.Image));
        Assert.Equal(3, bed.Cloud.Deprovisioned.Count(d => d.Reason == ReapReasons.Image));
    }

    [Fact]
    public async Task A_leased_worker_of_the_old_image_finishes_its_lease_and_is_deleted_when_it_ends()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 4, settings: Surge(1));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 1);
        await bed.SettledAsync();
        var version = (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).Version;

        await bed.Bus.Publish(new SetPoolImage(Pool, NewImage));
        await Until(async () => (await bed.WorkersAsync())
            .Any(w => w.CurrentState == WorkerStates.Ready && w.Image == NewImage), "a hot worker of the new image");
        await bed.SettledAsync();

        // A release deciding on the old image at that moment fails its version check and is retried on the new one.
        Assert.True((await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).Version > version);

        Assert.Equal(WorkerStates.Leased,
            (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).CurrentState);
        Assert.Equal("Granted", (await bed.LeaseAsync(granted.LeaseId))!.CurrentState);
        Assert.Empty(bed.PublishedOf<LeaseRevoked>());
        Assert.Equal(1, (await StatusAsync(bed)).OutdatedWorkers);

        await bed.ReleaseAsync(granted.LeaseId, "instance-1");

        await Until(() => bed.Cloud.Deprovisioned.Any(
            d => d.WorkerId == granted.WorkerId && d.Reason == ReapReasons.Image), "the released old worker deleted");
        await bed.SettledAsync();
        Assert.Equal("Released", (await bed.LeaseAsync(granted.LeaseId))!.CurrentState);
        Assert.DoesNotContain(await bed.WorkersAsync(), w => w.CurrentState == WorkerStates.Idle);
        Assert.Equal(0, (await StatusAsync(bed)).OutdatedWorkers);
    }

    [Fact]
    public async Task Idle_workers_of_the_old_image_are_deleted_at_once()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 4, settings: Surge(1));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.UntilWorkersAsync(WorkerStates.Idle, 1);

        await bed.Bus.Publish(new SetPoolImage(Pool, NewImage));

        await Until(() => bed.Cloud.Deprovisioned.Any(
            d => d.WorkerId == granted.WorkerId && d.Reason == ReapReasons.Image), "the idle old worker deleted");
        await Until(async () => (await bed.WorkersAsync()).All(w => w.Image == NewImage),
            "every worker on the new image");
    }

    [Fact]
    public async Task A_configured_image_changed_at_start_rolls_out()
    {
        await using var bed = await StartAsync(hotTarget: 2, maxWorkers: 4, settings: Surge(1));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 2);

        await bed.RestartAsync(2, 4, Surge(1, NewImage));

        await Until(async () => (await bed.WorkersAsync())
            .Count(w => w.CurrentState == WorkerStates.Ready && w.Image == NewImage) == 2,
            "two hot workers of the configured image");
        await Until(async () => (await bed.WorkersAsync()).Count == 2, "the old ones gone");
        Assert.Equal(NewImage, (await bed.PoolAsync())!.Image);
        Assert.Equal(2, bed.Cloud.Deprovisioned.Count(d => d.Reason == ReapReasons.Image));
    }

    [Fact]
    public async Task SetPoolImage_is_not_undone_by_an_unchanged_configuration_at_restart_and_a_repeat_changes_nothing()
    {
        await using var bed = await StartAsync(hotTarget: 2, maxWorkers: 4, settings: Surge(2));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 2);
        await bed.Bus.Publish(new SetPoolImage(Pool, NewImage));
        await Until(async () => (await bed.WorkersAsync())
            .Count(w => w.CurrentState == WorkerStates.Ready && w.Image == NewImage) == 2, "the rollout");
        await Until(async () => (await bed.WorkersAsync()).Count == 2, "the old ones gone");
        var provisioned = bed.Cloud.Provisioned.Count;

        await bed.Bus.Publish(new SetPoolImage(Pool, NewImage));
        await bed.SettledAsync();
        await bed.RestartAsync(2, 4, Surge(2));
        await Until(async () => (await StatusAsync(bed)).Image == NewImage, "the pool status after the restart");
        await bed.SettledAsync();

        Assert.Equal(provisioned, bed.Cloud.Provisioned.Count);
        Assert.Equal(NewImage, (await bed.PoolAsync())!.Image);
        Assert.All(await bed.WorkersAsync(),
            w => Assert.Equal((WorkerStates.Ready, NewImage), (w.CurrentState, w.Image)));
    }

    [Fact]
    public async Task Rows_from_before_images_were_recorded_take_the_configured_image_and_nothing_is_replaced()
    {
        await using var bed = await StartAsync(hotTarget: 2, maxWorkers: 4, settings: Surge(1));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 2);
        await bed.SettledAsync();
        var provisioned = bed.Cloud.Provisioned.Count;
        await using (var scope = bed.Services.CreateAsyncScope())
        {
            // What the WorkerImages migration leaves: empty images on the pool's row and its workers.
            var db = scope.ServiceProvider.GetRequiredService<DynamicWorkersDbContext>();
            await db.Set<PoolState>()
                .ExecuteUpdateAsync(p => p.SetProperty(x => x.Image, "").SetProperty(x => x.ConfiguredImage, ""));
            await db.Set<WorkerState>().ExecuteUpdateAsync(w => w.SetProperty(x => x.Image, ""));
        }

        await bed.Bus.Publish(new ReconcilePool(Pool));
        await Until(async () => (await bed.PoolAsync())!.ConfiguredImage == ConfiguredImage,
            "the pool's row to take the configured image");
        await bed.SettledAsync();

        Assert.Equal(ConfiguredImage, (await bed.PoolAsync())!.Image);
        Assert.All(await bed.WorkersAsync(),
            w => Assert.Equal((WorkerStates.Ready, ConfiguredImage), (w.CurrentState, w.Image)));
        Assert.Equal(provisioned, bed.Cloud.Provisioned.Count);
        Assert.Empty(bed.Cloud.Deprovisioned);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public async Task A_blank_image_is_refused_and_changes_nothing(string image)
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2, settings: Surge(1));
        await bed.UntilWorkersAsync(WorkerStates.Ready, 1);

        await bed.Bus.Publish(new SetPoolImage(Pool, image));
        await Until(() => bed.Harness.Published.Select<MassTransit.Fault<SetPoolImage>>().Any(), "the fault");

        Assert.Equal(ConfiguredImage, (await bed.PoolAsync())!.Image);
    }

    static async Task<PoolSummary> StatusAsync(LifecycleBed bed)
        => (await bed.Harness.GetRequestClient<GetPoolStatus>().GetResponse<PoolStatus>(new GetPoolStatus(Pool)))
            .Message.Pools.Single();
}
