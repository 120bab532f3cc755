using System.Text.Json;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using DynamicWorkers.Infrastructure.Scheduling;
using DynamicWorkers.LeaseSaga.Pools;
using DynamicWorkers.LeaseSaga.Queries;
using MassTransit;
using MassTransit.Scheduling;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static DynamicWorkers.UnitTests.Lifecycle.LifecycleBed;

namespace DynamicWorkers.UnitTests.Lifecycle;

/// <summary>The rules of DESIGN.md, one test each, on the in-memory harness with a virtual clock.</summary>
public sealed class LeaseLifecycleTests
{
    [Theory]
    [InlineData("", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "InstanceId is empty")]
    [InlineData("instance-1", "abc; rm -rf /", "ServerThumbprint must be")]
    [InlineData("instance-1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "ServerThumbprint must be")]
    public async Task An_invalid_request_is_rejected_with_a_detail_a_person_can_act_on(string instance,
        string thumbprint, string detail)
    {
        await using var bed = await StartAsync(hotTarget: 0);

        var outcome = Assert.IsType<LeaseRejected>(await bed.RequestAsync(Guid.NewGuid(), instance, thumbprint));

        Assert.Equal(LeaseRejectionReasons.InvalidRequest, outcome.Reason);
        Assert.Contains(detail, outcome.Detail);
        Assert.Empty(await bed.WorkersAsync());
    }

    [Theory]
    [InlineData(1024 * 1024, 5, 5, "InstanceId is 1048576 characters", LeaseRejectionReasons.InvalidRequest)]
    [InlineData(5, 10_000, 5, "TaskId is 10000 characters", LeaseRejectionReasons.InvalidRequest)]
    [InlineData(5, 5, 10_000, "does not exist", LeaseRejectionReasons.UnknownPool)]
    public async Task An_oversized_field_is_rejected_and_stored_cut_to_its_column(int instanceLength, int taskLength,
        int poolLength, string detail, string reason)
    {
        // PostgreSQL and SQL Server refuse a value longer than its column: storing it whole failed the save
        // (retried for minutes, then _error) instead of answering. Found by the hostile input test.
        await using var bed = await StartAsync(hotTarget: 0);
        var leaseId = Guid.NewGuid();

        await bed.Bus.Publish(new LeaseRequested(
            leaseId, new string('i', instanceLength), ThumbprintA, new string('p', poolLength),
            new string('t', taskLength), bed.Clock.GetUtcNow()));
        await Until(() => bed.Outcomes(leaseId).Count > 0, "the rejection");

        var outcome = Assert.IsType<LeaseRejected>(bed.Outcomes(leaseId)[0]);
        Assert.Equal(reason, outcome.Reason);
        Assert.Contains(detail, outcome.Detail);
        var row = await bed.LeaseAsync(leaseId);
        Assert.NotNull(row);
        Assert.True(row.InstanceId.Length <= 200 && row.Pool.Length <= 64 && (row.TaskId?.Length ?? 0) <= 200);
    }

    [Fact]
    public async Task An_unknown_pool_is_rejected_naming_the_known_ones()
    {
        await using var bed = await StartAsync(hotTarget: 0);

        var outcome =
            Assert.IsType<LeaseRejected>(await bed.RequestAsync(Guid.NewGuid(), "instance-1", pool: "macos-14"));

        Assert.Equal(LeaseRejectionReasons.UnknownPool, outcome.Reason);
        Assert.Contains("known pools: linux", outcome.Detail);
    }

    [Fact]
    public async Task A_hot_worker_is_reserved_told_to_trust_the_thumbprint_and_granted()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var leaseId = Guid.NewGuid();

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(leaseId, "instance-1"));

        Assert.False(granted.Reused);
        var trust = Assert.Single(bed.Cloud.Trusted);
        Assert.Equal((granted.WorkerId, "instance-1", ThumbprintA),
            (trust.WorkerId, trust.InstanceId, trust.Thumbprint));
        Assert.Equal(bed.Clock.GetUtcNow() + TimeSpan.FromHours(24), granted.ExpiresAt);
        // The pool refills the moment a worker leaves it.
        await bed.UntilWorkersAsync("Ready", 1);
    }

    [Fact]
    public async Task A_request_with_a_response_address_is_answered_there_as_well_as_published()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var client = bed.Harness.GetRequestClient<LeaseRequested>();
        var leaseId = Guid.NewGuid();

        var response = await client.GetResponse<LeaseGranted, LeaseRejected>(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        var rejected = await client.GetResponse<LeaseGranted, LeaseRejected>(
            new LeaseRequested(Guid.NewGuid(), "instance-1", ThumbprintA, "no-such-pool", null, bed.Clock.GetUtcNow()));

        Assert.True(response.Is(out Response<LeaseGranted>? granted));
        Assert.Equal(leaseId, granted!.Message.LeaseId);
        Assert.Contains(bed.PublishedOf<LeaseGranted>(), g => g.LeaseId == leaseId);
        Assert.True(rejected.Is(out Response<LeaseRejected>? unknown));
        Assert.Equal(LeaseRejectionReasons.UnknownPool, unknown!.Message.Reason);
    }

    [Fact]
    public async Task A_repeated_request_gets_the_same_outcome_and_re_runs_nothing()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var leaseId = Guid.NewGuid();
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(leaseId, "instance-1"));

        var again = Assert.IsType<LeaseGranted>(await bed.RequestAsync(leaseId, "instance-1"));

        Assert.Equal(first, again);
        await bed.SettledAsync();
        Assert.Single(bed.Cloud.Trusted);
    }

    [Fact]
    public async Task The_same_lease_id_from_another_instance_is_a_conflict_and_changes_nothing()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var leaseId = Guid.NewGuid();
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(leaseId, "instance-1"));

        var conflict = Assert.IsType<LeaseRejected>(await bed.RequestAsync(leaseId, "instance-2"));

        Assert.Equal(LeaseRejectionReasons.LeaseIdConflict, conflict.Reason);
        Assert.Equal("instance-2", conflict.InstanceId);
        var lease = await bed.LeaseAsync(leaseId);
        Assert.Equal(("Granted", "instance-1", granted.WorkerId),
            (lease!.CurrentState, lease.InstanceId, lease.WorkerId!.Value));
    }

    [Fact]
    public async Task An_idle_worker_trusting_the_instance_is_reused_without_a_trust_step()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(first.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);

        var second = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));

        Assert.True(second.Reused);
        Assert.Equal(first.WorkerId, second.WorkerId);
        Assert.Single(bed.Cloud.Trusted);
    }

    [Fact]
    public async Task A_reused_worker_keeps_its_max_age_timer_and_is_still_revoked_at_max_age()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.Bus.Publish(
            new SetInstanceLifecycle("instance-1", null, TimeSpan.FromHours(2), TimeSpan.FromHours(10)));
        await bed.UntilWorkersAsync("Ready", 1);
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(first.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);
        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromHours(2));
        await bed.SettledAsync();
        var armed = TimerSchedules(bed);

        var second = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.SettledAsync();

        // A re-use moves no deadline earlier than the standing timer: the scheduler hears nothing of it.
        Assert.True(second.Reused);
        Assert.Equal(armed, TimerSchedules(bed));
        await bed.AdvanceAsync(TimeSpan.FromHours(2));
        await Until(() => bed.PublishedOf<LeaseRevoked>().Any(r => r.LeaseId == second.LeaseId), "the revocation");
        Assert.Equal(LeaseRevocationReasons.MaxWorkerAge, bed.PublishedOf<LeaseRevoked>().Single().Reason);
    }

    [Fact]
    public async Task A_hot_worker_granted_under_the_default_lifecycle_keeps_the_max_age_timer_it_was_provisioned_with()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 1);
        // The default max worker age (72 h); only leases may run longer than their default 24 h.
        await bed.Bus.Publish(new SetInstanceLifecycle("instance-1", null, null, TimeSpan.FromHours(100)));
        await bed.UntilWorkersAsync("Ready", 1);
        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromHours(72));
        await bed.SettledAsync();
        Assert.Equal(1, TimerSchedules(bed));

        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.SettledAsync();

        // The trust step and the grant leave the timer the worker was started with: no cancel and no second schedule.
        Assert.False(granted.Reused);
        Assert.Equal(1, TimerSchedules(bed));
        await bed.AdvanceAsync(TimeSpan.FromHours(72));
        await Until(() => bed.PublishedOf<LeaseRevoked>().Any(r => r.LeaseId == granted.LeaseId),
            "the revocation at the default max age");
        Assert.Equal(LeaseRevocationReasons.MaxWorkerAge, bed.PublishedOf<LeaseRevoked>().Single().Reason);
    }

    [Fact]
    public async Task A_hot_grant_schedules_no_timer_and_the_lease_is_still_revoked_at_its_max_duration()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        await bed.SettledAsync();
        var armed = TimerSchedules(bed);

        // Hot for 20 h: its timer, due no later than a lease granted when it was armed would expire, still stands.
        await bed.AdvanceAsync(TimeSpan.FromHours(20));
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.SettledAsync();
        Assert.Equal(armed, TimerSchedules(bed));
        Assert.Equal(bed.Clock.GetUtcNow() + TimeSpan.FromHours(24), granted.ExpiresAt);

        // It fires 4 h into the lease and re-arms for the lease's expiry, 20 h later.
        await bed.AdvanceAsync(TimeSpan.FromHours(4));
        await bed.SettledAsync();
        Assert.Equal(armed + 1, TimerSchedules(bed));
        Assert.Empty(bed.PublishedOf<LeaseRevoked>());
        await bed.AdvanceAsync(TimeSpan.FromHours(20));
        await Until(() => bed.PublishedOf<LeaseRevoked>()
            .Any(r => r.LeaseId == granted.LeaseId && r.Reason == LeaseRevocationReasons.MaxLeaseDuration),
            "the revocation at the max lease duration");
    }

    static int TimerSchedules(LifecycleBed bed)
        => bed.Harness.Sent.Select<ScheduleMessage>().Count(
            m => m.Context.Message.PayloadType.Any(t => t.Contains(nameof(WorkerTimerDue), StringComparison.Ordinal)));

    [Fact]
    public async Task A_worker_that_trusted_one_instance_is_never_granted_to_another()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var a = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-a"));
        await bed.ReleaseAsync(a.LeaseId, "instance-a");
        await bed.UntilWorkersAsync("Idle", 1);
        await bed.UntilWorkersAsync("Ready", 1);

        var b = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-b", ThumbprintB));

        Assert.NotEqual(a.WorkerId, b.WorkerId);
        Assert.False(b.Reused);
        Assert.All(await bed.WorkersAsync(),
            w => Assert.True(w.TrustedInstanceId is null or "instance-a" or "instance-b"));
        Assert.Equal("instance-a",
            (await bed.WorkersAsync()).Single(w => w.CorrelationId == a.WorkerId).TrustedInstanceId);
    }

    [Fact]
    public async Task Waiting_leases_are_served_first_come_first_served_while_the_pool_provisions()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true);
        var first = Guid.NewGuid();
        var second = Guid.NewGuid();
        await bed.Bus.Publish(new LeaseRequested(first, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(first, "WaitingForWorker");
        await bed.AdvanceAsync(TimeSpan.FromSeconds(1));
        await bed.Bus.Publish(new LeaseRequested(second, "instance-2", ThumbprintB, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(second, "WaitingForWorker");

        // Max 1 worker: only one is started, and it goes to the lease that came first.
        var held = Assert.Single(bed.Cloud.Held);
        await bed.Bus.Publish(
            new WorkerProvisioned(held.WorkerId, "10.0.0.9:10933", new string('C', 40), bed.Clock.GetUtcNow()));
        await Until(() => bed.Outcomes(first).Count == 1, "the first lease's grant");

        Assert.IsType<LeaseGranted>(bed.Outcomes(first)[0]);
        Assert.Empty(bed.Outcomes(second));
        Assert.Equal("WaitingForWorker", (await bed.LeaseAsync(second))!.CurrentState);
    }

    [Fact]
    public async Task A_lease_still_waiting_after_the_allocation_timeout_gets_NoCapacity()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true);
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(leaseId, "WaitingForWorker");

        await bed.UntilTimerAsync<LeaseAllocationTimedOut>(TimeSpan.FromMinutes(5));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(4));
        Assert.Empty(bed.Outcomes(leaseId));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(1));
        await Until(() => bed.Outcomes(leaseId).Count == 1, "the NoCapacity rejection");

        var rejected = Assert.IsType<LeaseRejected>(bed.Outcomes(leaseId)[0]);
        Assert.Equal(LeaseRejectionReasons.NoCapacity, rejected.Reason);
        Assert.Contains("00:05:00", rejected.Detail);
        Assert.Equal("Rejected", (await bed.LeaseAsync(leaseId))!.CurrentState);
    }

    [Fact]
    public async Task Only_a_lease_that_waits_in_line_sets_an_allocation_timer_and_it_runs_to_the_deadline_set_on_arrival()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2, cloud: c => c.HoldProvisioning = true);
        await Until(() => bed.Cloud.Held.Count == 1, "the hot worker provisioning");
        var hotWorker = Assert.Single(bed.Cloud.Held);
        await bed.Bus.Publish(
            new WorkerProvisioned(hotWorker.WorkerId, "10.0.0.1:10933", new string('A', 40), bed.Clock.GetUtcNow()));
        await bed.UntilWorkersAsync("Ready", 1);

        // Served at once from the hot pool: no timer is set (nor cancelled), so the scheduler hears nothing of it.
        var hot = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.SettledAsync();
        Assert.DoesNotContain(AllocationTimers(), m => Timed(m) == hot.LeaseId);

        // No worker left and the next one still provisioning: this lease waits, and its timer is due 5 min after it
        // arrived.
        var waiting = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(waiting, "instance-2", ThumbprintB, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(waiting, "WaitingForWorker");
        await Until(() => AllocationTimers().Any(m => Timed(m) == waiting), "its allocation timer");
        var lease = (await bed.LeaseAsync(waiting))!;
        Assert.NotNull(lease.AllocationTimeoutToken);
        Assert.True(
            bed.Scheduler.HasPending(typeof(LeaseAllocationTimedOut), lease.ReceivedAt + TimeSpan.FromMinutes(5)));
        Assert.False(bed.Scheduler.HasPending(typeof(LeaseAllocationTimedOut),
            lease.ReceivedAt + TimeSpan.FromMinutes(5) - TimeSpan.FromSeconds(1)));

        List<ScheduleMessage> AllocationTimers()
            => bed.Harness.Consumed.Select<ScheduleMessage>()
                .Where(m => m.Context.Message.PayloadType.Contains(MessageUrn.ForTypeString<LeaseAllocationTimedOut>()))
                .Select(m => m.Context.Message).ToList();

        static Guid Timed(ScheduleMessage m) => ((JsonElement)m.Payload).GetProperty("leaseId").GetGuid();
    }

    [Fact]
    public async Task A_lease_beyond_a_full_waiting_line_gets_NoCapacity_at_once_and_the_line_keeps_its_place()
    {
        await using var bed =
            await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true, maxWaiting: 1);
        var first = Guid.NewGuid();
        var second = Guid.NewGuid();
        await bed.Bus.Publish(new LeaseRequested(first, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(first, "WaitingForWorker");
        await bed.Bus.Publish(new LeaseRequested(second, "instance-2", ThumbprintB, Pool, null, bed.Clock.GetUtcNow()));

        // No time passes: the second is turned away at once, not by its allocation timer.
        await Until(() => bed.Outcomes(second).Count == 1, "the second lease's rejection");
        var rejected = Assert.IsType<LeaseRejected>(bed.Outcomes(second)[0]);
        Assert.Equal(LeaseRejectionReasons.NoCapacity, rejected.Reason);
        Assert.Contains("MaxWaiting", rejected.Detail);
        Assert.Equal("Rejected", (await bed.LeaseAsync(second))!.CurrentState);
        Assert.Null((await bed.LeaseAsync(second))!.AllocationTimeoutToken);
        Assert.Equal("WaitingForWorker", (await bed.LeaseAsync(first))!.CurrentState);

        // The lease that waits is still served.
        var held = Assert.Single(bed.Cloud.Held);
        await bed.Bus.Publish(
            new WorkerProvisioned(held.WorkerId, "10.0.0.9:10933", new string('C', 40), bed.Clock.GetUtcNow()));
        await Until(() => bed.Outcomes(first).Count == 1, "the first lease's grant");
        Assert.IsType<LeaseGranted>(bed.Outcomes(first)[0]);
    }

    [Fact]
    public async Task A_flood_turned_away_warns_once_per_interval_with_a_count_not_once_per_lease()
    {
        var logs = new LogCapture();
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true,
            maxWaiting: 1, logs: logs);
        var waiting = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(waiting, "instance-0", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(waiting, "WaitingForWorker");

        async Task TurnAwayAsync(int count)
        {
            var leases = Enumerable.Range(0, count).Select(_ => Guid.NewGuid()).ToList();
            foreach (var lease in leases)
            {
                await bed.Bus.Publish(
                    new LeaseRequested(lease, $"instance-{lease:N}", ThumbprintB, Pool, null, bed.Clock.GetUtcNow()));
            }

            await Until(() => leases.All(
                l => bed.Outcomes(l).SingleOrDefault() is LeaseRejected { Reason: LeaseRejectionReasons.NoCapacity }),
                "every lease turned away");
        }

        List<LogCapture.Record> Warnings() => logs.Records
            .Where(r => r.Level == LogLevel.Warning && r.Fields.GetValueOrDefault("{OriginalFormat}") is string f
                && f.Contains("turned away", StringComparison.Ordinal))
            .ToList();

        await TurnAwayAsync(5);
        var first = Assert.Single(Warnings());
        Assert.Equal(0, first.Fields["Unreported"]);

        // Within the interval: counted, not logged.
        await bed.AdvanceAsync(TurnAwayWarnings.Interval / 2);
        await TurnAwayAsync(3);
        Assert.Single(Warnings());

        // After it: one warning that says how many went unlogged (4 after the first, 3 since).
        await bed.AdvanceAsync(TurnAwayWarnings.Interval);
        await TurnAwayAsync(1);
        Assert.Equal(2, Warnings().Count);
        Assert.Equal(7, Warnings()[1].Fields["Unreported"]);

        // The count starts again after each warning.
        await TurnAwayAsync(2);
        await bed.AdvanceAsync(TurnAwayWarnings.Interval);
        await TurnAwayAsync(1);
        Assert.Equal(3, Warnings().Count);
        Assert.Equal(2, Warnings()[2].Fields["Unreported"]);
    }

    [Fact]
    public async Task Two_leases_racing_for_the_last_hot_worker_never_both_get_it()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 1);
        await bed.UntilWorkersAsync("Ready", 1);

        var leases = new[] { Guid.NewGuid(), Guid.NewGuid() };
        await Task.WhenAll(leases.Select((id, i) => bed.Bus.Publish(
            new LeaseRequested(id, $"instance-{i}", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()))));
        await Until(() => leases.Sum(l => bed.Outcomes(l).Count) == 1, "one grant");
        await bed.SettledAsync();

        Assert.Single(leases.SelectMany(bed.Outcomes).OfType<LeaseGranted>());
        Assert.Single(bed.Cloud.Trusted);
    }

    [Fact]
    public async Task An_idle_worker_is_reaped_after_the_default_idle_timeout()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        var granted = await GrantColdAsync(bed, "instance-1");
        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);

        await ReapedAsIdleAfterAsync(bed, granted.WorkerId, TimeSpan.FromMinutes(60));
        await Until(async () => (await bed.WorkersAsync()).All(w => w.CorrelationId != granted.WorkerId),
            "the worker to be gone");
    }

    [Fact]
    public async Task A_reused_worker_keeps_its_idle_timer_and_is_still_reaped_an_idle_timeout_after_its_last_release()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        var first = await IdleAfterALeaseAsync(bed);
        await bed.SettledAsync();
        var armed = (await bed.WorkersAsync()).Single().TimerToken;
        var schedules = TimerSchedules(bed);

        await bed.AdvanceAsync(TimeSpan.FromMinutes(20));
        var second = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(second.LeaseId, "instance-1");
        await Until(async () => (await bed.WorkersAsync()).Single() is { CurrentState: "Idle", LastLeaseId: var last }
            && last == second.LeaseId, "the second release");
        await bed.SettledAsync();

        // A re-use and its release move no deadline earlier than the standing timer: no cancel, no new schedule.
        Assert.True(second.Reused);
        Assert.Equal(armed, (await bed.WorkersAsync()).Single().TimerToken);
        Assert.Equal(schedules, TimerSchedules(bed));

        // Due 60 minutes after the first release, the timer finds the worker idle for 40: it re-arms for the other 20.
        await bed.AdvanceAsync(TimeSpan.FromMinutes(40));
        await ReapedAsIdleAfterAsync(bed, first.WorkerId, TimeSpan.FromMinutes(20));
    }

    [Fact]
    public async Task An_idle_timer_that_falls_due_during_a_re_use_is_armed_again_by_the_next_release()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        var first = await IdleAfterALeaseAsync(bed);
        await bed.AdvanceAsync(TimeSpan.FromMinutes(10));
        var second = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));

        // The standing timer falls due while the worker is leased again: it re-arms for the lease's deadlines, and the
        // worker is not retired.
        await bed.AdvanceAsync(TimeSpan.FromMinutes(60));
        await bed.SettledAsync();
        Assert.Equal("Leased", (await bed.WorkersAsync()).Single().CurrentState);
        Assert.Empty(bed.Cloud.Deprovisioned);
        await bed.ReleaseAsync(second.LeaseId, "instance-1");
        await ReapedAsIdleAfterAsync(bed, first.WorkerId, TimeSpan.FromMinutes(60));
    }

    [Fact]
    public async Task A_release_after_the_idle_timeout_was_shortened_replaces_the_standing_idle_timer()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        var first = await IdleAfterALeaseAsync(bed);
        var second = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.Bus.Publish(new SetInstanceLifecycle("instance-1", TimeSpan.FromMinutes(5), null, null));
        await bed.SettledAsync();
        var standing = (await bed.WorkersAsync()).Single().TimerToken;

        await bed.ReleaseAsync(second.LeaseId, "instance-1");
        await bed.SettledAsync();

        // The new schedule names the one it replaces: the scheduler removes that one (SchedulerTests).
        var replacement = bed.Harness.Sent.Select<ScheduleMessage>().Last(m =>
            m.Context.Message.PayloadType.Any(t => t.Contains(nameof(WorkerTimerDue), StringComparison.Ordinal)));
        Assert.Equal(standing?.ToString("N"), replacement.Context.Headers.Get<string>(ScheduleReplacement.Header));
        Assert.Equal(replacement.Context.Message.CorrelationId, (await bed.WorkersAsync()).Single().TimerToken);
        await ReapedAsIdleAfterAsync(bed, first.WorkerId, TimeSpan.FromMinutes(5));
    }

    [Fact]
    public async Task A_re_use_whose_lease_expires_before_the_standing_timer_arms_an_earlier_one()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        await IdleAfterALeaseAsync(bed);
        // The timer the worker was started with fires at its provisioning deadline and re-arms for the idle deadline.
        await bed.AdvanceAsync(TimeSpan.FromMinutes(31));
        await bed.Bus.Publish(new SetInstanceLifecycle("instance-1", null, null, TimeSpan.FromMinutes(5)));
        await bed.SettledAsync();
        Assert.False(bed.Scheduler.HasPending(typeof(WorkerTimerDue), bed.Clock.GetUtcNow() + TimeSpan.FromMinutes(5)));

        var second = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));

        // The lease expires before the standing timer: the lease tells the worker, which arms one for its expiry.
        Assert.True(second.Reused);
        Assert.Equal(bed.Clock.GetUtcNow() + TimeSpan.FromMinutes(5), second.ExpiresAt);
        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromMinutes(5));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(5));
        await Until(() => bed.PublishedOf<LeaseRevoked>().Any(
            r => r.LeaseId == second.LeaseId && r.Reason == LeaseRevocationReasons.MaxLeaseDuration), "the revocation");
    }

    /// <summary>A cold lease of instance-1, released: its worker idles with the default idle timer armed.</summary>
    static async Task<LeaseGranted> IdleAfterALeaseAsync(LifecycleBed bed)
    {
        var granted = await GrantColdAsync(bed, "instance-1");
        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);
        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromMinutes(60));
        return granted;
    }

    /// <summary>The worker's idle timer is armed for <paramref name="after"/>: a minute before, it still lives; then it
    /// is retired as idle.</summary>
    static async Task ReapedAsIdleAfterAsync(LifecycleBed bed, Guid workerId, TimeSpan after)
    {
        await bed.UntilTimerAsync<WorkerTimerDue>(after);
        await bed.AdvanceAsync(after - TimeSpan.FromMinutes(1));
        Assert.Empty(bed.Cloud.Deprovisioned);
        await bed.AdvanceAsync(TimeSpan.FromMinutes(1));
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == workerId && d.Reason == "idle"),
            "the idle worker's deprovisioning");
    }

    [Fact]
    public async Task SetInstanceLifecycle_changes_the_idle_timeout_of_that_instance_from_then_on()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        await bed.Bus.Publish(new SetInstanceLifecycle("instance-1", TimeSpan.FromMinutes(5), null, null));
        await bed.SettledAsync();
        var granted = await GrantColdAsync(bed, "instance-1");
        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);

        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromMinutes(5));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(5));
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == granted.WorkerId),
            "the idle worker's deprovisioning after 5 minutes");
    }

    [Fact]
    public async Task A_lease_never_released_is_revoked_at_max_lease_duration_and_its_worker_deprovisioned()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        var granted = await GrantColdAsync(bed, "instance-1");

        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromHours(24));
        await bed.AdvanceAsync(TimeSpan.FromHours(24));
        await Until(() => bed.PublishedOf<LeaseRevoked>().Any(r => r.LeaseId == granted.LeaseId), "the revocation");

        Assert.Equal(LeaseRevocationReasons.MaxLeaseDuration, bed.PublishedOf<LeaseRevoked>().Single().Reason);
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == granted.WorkerId && d.Reason == "max_lease"),
            "the worker's deprovisioning");
        Assert.Equal("Revoked", (await bed.LeaseAsync(granted.LeaseId))!.CurrentState);
    }

    [Fact]
    public async Task A_leased_worker_reaching_max_age_has_its_lease_revoked()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        await bed.Bus.Publish(
            new SetInstanceLifecycle("instance-1", null, TimeSpan.FromHours(2), TimeSpan.FromHours(10)));
        await bed.SettledAsync();
        var granted = await GrantColdAsync(bed, "instance-1");

        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromHours(2));
        await bed.AdvanceAsync(TimeSpan.FromHours(2));
        await Until(() => bed.PublishedOf<LeaseRevoked>().Any(r => r.LeaseId == granted.LeaseId), "the revocation");

        Assert.Equal(LeaseRevocationReasons.MaxWorkerAge, bed.PublishedOf<LeaseRevoked>().Single().Reason);
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == granted.WorkerId && d.Reason == "max_age"),
            "the worker's deprovisioning");
    }

    [Fact]
    public async Task A_hot_worker_reaching_max_age_is_replaced()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2);
        await bed.UntilWorkersAsync("Ready", 1);
        var old = (await bed.WorkersAsync()).Single().CorrelationId;

        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromHours(72));
        await bed.AdvanceAsync(TimeSpan.FromHours(72));
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == old && d.Reason == "max_age"),
            "the old worker's deprovisioning");
        await Until(async () => (await bed.WorkersAsync())
            .Any(w => w.CorrelationId != old && w.CurrentState == "Ready"), "a fresh hot worker");
    }

    [Fact]
    public async Task A_failed_trust_gets_the_worker_deprovisioned_and_the_lease_served_by_a_replacement()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 3, cloud: c => c.FailTrust = true);
        await bed.UntilWorkersAsync("Ready", 1);
        var first = (await bed.WorkersAsync()).Single().CorrelationId;
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == first), "the failed worker's deprovisioning");

        bed.Cloud.FailTrust = false;
        await Until(() => bed.Outcomes(leaseId).Count == 1, "the grant by a replacement");

        var granted = Assert.IsType<LeaseGranted>(bed.Outcomes(leaseId)[0]);
        Assert.NotEqual(first, granted.WorkerId);
    }

    [Fact]
    public async Task Repeated_provisioning_failures_back_the_pool_off_instead_of_burning_money()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 3, cloud: c => c.FailProvisioning = true);

        await Until(async () => (await bed.PoolAsync())?.BackoffUntil is not null, "the pool to back off");
        await bed.SettledAsync();
        Assert.Equal(3, bed.Cloud.Provisioned.Count);

        bed.Cloud.FailProvisioning = false;
        await bed.UntilTimerAsync<PoolBackoffEnded>(TimeSpan.FromSeconds(30));
        await bed.AdvanceAsync(TimeSpan.FromSeconds(30));
        await bed.UntilWorkersAsync("Ready", 1);
        Assert.Equal(4, bed.Cloud.Provisioned.Count);
    }

    [Fact]
    public async Task SetPoolSize_takes_effect_at_once_both_ways_and_is_persisted()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 3);
        await bed.UntilWorkersAsync("Ready", 1);

        await bed.Bus.Publish(new SetPoolSize(Pool, 3, 5));
        await bed.UntilWorkersAsync("Ready", 3);
        Assert.Equal((3, 5), ((await bed.PoolAsync())!.HotTarget, (await bed.PoolAsync())!.MaxWorkers));

        await bed.Bus.Publish(new SetPoolSize(Pool, 0, 5));
        await Until(async () => (await bed.WorkersAsync()).Count == 0, "every hot worker to be retired");
        Assert.Equal(3, bed.Cloud.Deprovisioned.Count(d => d.Reason == "idle"));
    }

    [Fact]
    public async Task A_release_from_an_instance_that_does_not_own_the_lease_changes_nothing()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));

        await bed.ReleaseAsync(granted.LeaseId, "instance-2");
        await bed.SettledAsync();

        Assert.Equal("Granted", (await bed.LeaseAsync(granted.LeaseId))!.CurrentState);
        Assert.Equal("Leased",
            (await bed.WorkersAsync()).Single(w => w.CorrelationId == granted.WorkerId).CurrentState);
    }

    [Fact]
    public async Task A_release_before_the_grant_still_gives_one_outcome_and_then_ends_the_lease()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1, cloud: c => c.HoldProvisioning = true);
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(leaseId, "WaitingForWorker");
        await bed.ReleaseAsync(leaseId, "instance-1");
        await bed.SettledAsync();

        var held = Assert.Single(bed.Cloud.Held);
        await bed.Bus.Publish(
            new WorkerProvisioned(held.WorkerId, "10.0.0.9:10933", new string('C', 40), bed.Clock.GetUtcNow()));
        await Until(async () => (await bed.LeaseAsync(leaseId))!.CurrentState == "Released", "the lease to end");
        // The grant is published after the saga is saved (the outbox): the saved state can be read before it is out.
        await Until(() => bed.Outcomes(leaseId).Count > 0, "the lease's outcome");
        await bed.SettledAsync();

        Assert.IsType<LeaseGranted>(Assert.Single(bed.Outcomes(leaseId)));
        await bed.UntilWorkersAsync("Idle", 1);
    }

    [Fact]
    public async Task A_release_that_overtakes_its_own_request_still_ends_the_lease()
    {
        await using var bed = await StartAsync(hotTarget: 1);
        await bed.UntilWorkersAsync("Ready", 1);
        var leaseId = Guid.NewGuid();

        await bed.ReleaseAsync(leaseId, "instance-1");
        await bed.SettledAsync();
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(leaseId, "instance-1"));
        await bed.UntilTimerAsync<LeaseReleased>(TimeSpan.FromSeconds(1));
        await bed.AdvanceAsync(TimeSpan.FromSeconds(1));

        await Until(async () => (await bed.LeaseAsync(leaseId))!.CurrentState == "Released",
            "the redelivered release to end the lease");
        await bed.UntilWorkersAsync("Idle", 1);
        Assert.Equal(granted.WorkerId, (await bed.WorkersAsync()).Single(w => w.CurrentState == "Idle").CorrelationId);
    }

    [Fact]
    public async Task A_per_instance_max_lease_duration_applies_to_that_instance_s_next_lease()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        await bed.Bus.Publish(new SetInstanceLifecycle("instance-1", null, null, TimeSpan.FromMinutes(30)));
        await bed.SettledAsync();
        var granted = await GrantColdAsync(bed, "instance-1");

        Assert.Equal(bed.Clock.GetUtcNow() + TimeSpan.FromMinutes(30), granted.ExpiresAt);
        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromMinutes(30));
        await bed.AdvanceAsync(TimeSpan.FromMinutes(30));
        await Until(() => bed.PublishedOf<LeaseRevoked>()
            .Any(r => r.LeaseId == granted.LeaseId && r.Reason == LeaseRevocationReasons.MaxLeaseDuration),
            "the revocation");
    }

    [Fact]
    public async Task A_provisioning_that_times_out_is_given_up_and_replaced()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2, cloud: c => c.HoldProvisioning = true);
        await Until(() => bed.Cloud.Held.Count == 1, "the first provisioning");
        var stuck = bed.Cloud.Held.Single().WorkerId;
        bed.Cloud.HoldProvisioning = false;
        await bed.SettledAsync();
        // Provisioning has no timer of its own: the sweep enforces its deadline.
        Assert.Null((await bed.WorkersAsync()).Single(w => w.CorrelationId == stuck).TimerToken);

        await bed.AdvanceAsync(TimeSpan.FromMinutes(30));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));
        await bed.SettledAsync();
        Assert.Empty(bed.Cloud.Deprovisioned);
        await bed.AdvanceAsync(TimeSpan.FromMinutes(1.5));
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));

        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == stuck && d.Reason == "failed"),
            "the stuck VM's deletion");
        await Until(async () => (await bed.WorkersAsync())
            .Any(w => w.CorrelationId != stuck && w.CurrentState == "Ready"), "a replacement");
    }

    [Fact]
    public async Task A_worker_that_turns_ready_after_its_pool_shrank_is_retired_at_once()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2, cloud: c => c.HoldProvisioning = true);
        await Until(() => bed.Cloud.Held.Count == 1, "the hot worker's provisioning");
        var late = bed.Cloud.Held.Single().WorkerId;
        await bed.Bus.Publish(new SetPoolSize(Pool, 0, 2));
        await Until(async () => (await bed.PoolAsync())?.HotTarget == 0, "the pool shrunk to no hot worker");

        await bed.Bus.Publish(
            new WorkerProvisioned(late, "10.0.0.9:10933", new string('A', 40), bed.Clock.GetUtcNow()));

        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == late && d.Reason == "idle"),
            "the surplus worker deleted");
        await Until(async () => (await bed.WorkersAsync()).Count == 0, "no worker left");
    }

    [Fact]
    public async Task Pool_status_and_worker_list_are_answered_from_the_database()
    {
        await using var bed = await StartAsync(hotTarget: 2, maxWorkers: 4);
        await bed.UntilWorkersAsync("Ready", 2);
        var granted = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.UntilWorkersAsync("Ready", 2);

        var status =
            (await bed.Harness.GetRequestClient<GetPoolStatus>().GetResponse<PoolStatus>(new GetPoolStatus(Pool)))
            .Message;
        var workers = (await bed.Harness.GetRequestClient<GetWorkers>()
            .GetResponse<WorkerList>(new GetWorkers(Pool, "instance-1"))).Message;

        var pool = Assert.Single(status.Pools);
        Assert.Equal((Pool, 2, 4, "test-image"), (pool.Pool, pool.HotTarget, pool.MaxWorkers, pool.Image));
        Assert.Equal(2, pool.WorkersByState["Ready"]);
        Assert.Equal(1, pool.WorkersByState["Leased"]);
        var mine = Assert.Single(workers.Workers);
        Assert.Equal((granted.WorkerId, "Leased", "instance-1", granted.LeaseId, 1),
            (mine.WorkerId, mine.State, mine.TrustedInstanceId, mine.CurrentLeaseId!.Value, mine.LeaseCount));

        var leases = bed.Harness.GetRequestClient<GetLeases>();
        var lease =
            Assert.Single((await leases.GetResponse<LeaseList>(new GetLeases(Pool, "instance-1"))).Message.Leases);
        Assert.Equal((granted.LeaseId, "Granted", granted.WorkerId, false),
            (lease.LeaseId, lease.State, lease.WorkerId!.Value, lease.Waited));
        Assert.Empty((await leases.GetResponse<LeaseList>(new GetLeases(null, "instance-2"))).Message.Leases);
    }

    [Fact]
    public async Task Each_grant_s_wait_is_kept_for_the_dashboard_by_pool_and_path()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 3);
        await bed.UntilWorkersAsync("Ready", 1);
        var first = Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1"));
        await bed.ReleaseAsync(first.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);
        Assert.True(Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), "instance-1")).Reused);

        var waits = Assert.Single(bed.Services.GetRequiredService<PoolHistory>().Read(Pool)).Waits;
        Assert.Equal(["hot", "reuse"], waits.Select(w => w.Path).Order());
        Assert.All(waits, w => Assert.Equal(1, w.Count));
    }

    [Fact]
    public async Task The_sweep_reaps_a_worker_whose_idle_timer_was_lost()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 2);
        var granted = await GrantColdAsync(bed, "instance-1");
        await bed.ReleaseAsync(granted.LeaseId, "instance-1");
        await bed.UntilWorkersAsync("Idle", 1);
        await bed.SettledAsync();
        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromMinutes(60));
        bed.Scheduler.DropAll();

        await bed.AdvanceAsync(TimeSpan.FromMinutes(62));
        Assert.Empty(bed.Cloud.Deprovisioned);
        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));

        await Until(() => bed.Cloud.Deprovisioned.Any(d => d.WorkerId == granted.WorkerId && d.Reason == "idle"),
            "the sweep to reap the idle worker");
    }

    [Fact]
    public async Task The_sweep_gives_up_a_worker_whose_ProvisionWorker_was_lost_and_replaces_it()
    {
        await using var bed = await StartAsync(hotTarget: 0, maxWorkers: 1);
        await Until(async () => await bed.PoolAsync() is not null, "the pool");
        await bed.SettledAsync();
        // As if the pool had started a worker and its ProvisionWorker had died with its process: the pool is at its
        // maximum.
        var lost = await bed.AddWorkerAsync("Provisioning");
        await bed.AdvanceAsync(TimeSpan.FromMinutes(32));
        var leaseId = Guid.NewGuid();
        await bed.Bus.Publish(
            new LeaseRequested(leaseId, "instance-1", ThumbprintA, Pool, null, bed.Clock.GetUtcNow()));
        await bed.UntilLeaseAsync(leaseId, "WaitingForWorker");
        await bed.SettledAsync();
        Assert.Equal([lost], (await bed.WorkersAsync()).Select(w => w.CorrelationId));

        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));

        await Until(() => bed.Outcomes(leaseId).Count == 1, "the lease served by a replacement");
        Assert.IsType<LeaseGranted>(bed.Outcomes(leaseId)[0]);
        Assert.Contains(bed.Cloud.Deprovisioned, d => d.WorkerId == lost && d.Reason == "failed");
    }

    [Fact]
    public async Task The_sweep_arms_a_timer_for_a_worker_that_lost_its_own()
    {
        await using var bed = await StartAsync(hotTarget: 1, maxWorkers: 2);
        await bed.UntilWorkersAsync("Ready", 1);
        await bed.SettledAsync();
        var worker = (await bed.WorkersAsync()).Single().CorrelationId;
        // As if its schedule had died with a process: no timer, so nothing would ever retire it at its max age.
        await bed.UpdateWorkerAsync(worker, w => (w.TimerToken, w.TimerDueAt) = (null, null));
        bed.Scheduler.DropAll();
        await bed.AdvanceAsync(TimeSpan.FromMinutes(2));

        await bed.Bus.Publish(new SweepOverdueTimers(TimeSpan.FromMinutes(1)));

        await Until(async () => (await bed.WorkersAsync()).Single().TimerToken is not null, "a timer armed again");
        await bed.UntilTimerAsync<WorkerTimerDue>(TimeSpan.FromHours(72));
    }

    /// <summary>A grant on an empty pool: the worker is provisioned for the lease.</summary>
    static async Task<LeaseGranted> GrantColdAsync(LifecycleBed bed, string instance)
        => Assert.IsType<LeaseGranted>(await bed.RequestAsync(Guid.NewGuid(), instance));
}
