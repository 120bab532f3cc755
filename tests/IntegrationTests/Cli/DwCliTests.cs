using System.Text.Json;
using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Cli;

/// <summary>
/// The built <c>dw</c> as an OS process against the real broker and a running system (four service processes):
/// what an instance's script and an operator would type, checked by exit code and <c>--json</c> output.
/// </summary>
[Collection(RunningSystemCollection.Name)]
public sealed class DwCliTests(DwSystem system)
{
    static readonly string Thumbprint = new('c', 40);

    Dictionary<string, string> Env => new() { ["DW_RABBITMQ"] = system.RabbitMqUri };

    Task<CliRun> Dw(params string[] args) => CliRun.RunAsync(Env, args);

    [Fact]
    public async Task A_lease_is_granted_shown_in_pool_status_and_workers_then_released()
    {
        var leaseId = Guid.NewGuid().ToString();
        var request = await Dw("lease", "request", "--instance", "instance-a", "--thumbprint", Thumbprint, "--pool",
            DwSystem.Pool,
            "--lease-id", leaseId, "--wait", "--json", "--timeout", "30s");
        Assert.True(request.ExitCode == 0, $"{request}\n{system.Diagnostics()}");
        var grant = request.Json;
        Assert.Equal("granted", grant.GetProperty("outcome").GetString());
        Assert.Equal(leaseId, grant.GetProperty("leaseId").GetString());
        var workerId = grant.GetProperty("workerId").GetString();

        // The same lease id again: the same answer, nothing re-run (and --rabbitmq instead of the environment
        // variable).
        var repeat = await CliRun.RunAsync(null, "lease", "request", "--instance", "instance-a", "--thumbprint",
            Thumbprint, "--pool", DwSystem.Pool,
            "--lease-id", leaseId, "--wait", "--json", "--rabbitmq", system.RabbitMqUri);
        Assert.True(repeat.ExitCode == 0, repeat.ToString());
        Assert.Equal(workerId, repeat.Json.GetProperty("workerId").GetString());

        var status = await Dw("pool", "status", "--json");
        Assert.True(status.ExitCode == 0, status.ToString());
        var pool = status.Json.GetProperty("pools").EnumerateArray()
            .Single(p => p.GetProperty("pool").GetString() == DwSystem.Pool);
        // Other tests of the collection may hold leases of this pool at the same time.
        Assert.True(pool.GetProperty("workersByState").GetProperty("Leased").GetInt32() >= 1, status.Stdout);
        Assert.NotEmpty(pool.GetProperty("tools").EnumerateArray());

        var table = await Dw("pool", "status");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.StartsWith("POOL", table.Stdout);
        Assert.Contains(DwSystem.Pool, table.Stdout);
        Assert.Contains("Leased=", table.Stdout);

        var workers = await Dw("workers", "--instance", "instance-a", "--json");
        Assert.True(workers.ExitCode == 0, workers.ToString());
        var worker = Assert.Single(workers.Json.GetProperty("workers").EnumerateArray());
        Assert.Equal(workerId, worker.GetProperty("workerId").GetString());
        Assert.Equal("Leased", worker.GetProperty("state").GetString());
        Assert.Equal(leaseId, worker.GetProperty("currentLeaseId").GetString());
        Assert.Contains(workerId!, (await Dw("workers")).Stdout);

        var release = await Dw("lease", "release", "--lease-id", leaseId, "--instance", "instance-a");
        Assert.True(release.ExitCode == 0, release.ToString());
        await Eventually.True(
            async () => (await Dw("workers", "--instance", "instance-a", "--json"))
                .Json.GetProperty("workers")[0].GetProperty("state").GetString() == "Idle",
            TimeSpan.FromSeconds(20),
            "the released worker to go idle",
            system.Diagnostics);
    }

    [Fact]
    public async Task Leases_lists_one_instance_s_leases_with_how_each_was_served()
    {
        var leaseId = Guid.NewGuid().ToString();
        var request = await Dw("lease", "request", "--instance", "instance-l", "--thumbprint", Thumbprint, "--pool",
            DwSystem.Pool,
            "--lease-id", leaseId, "--wait", "--json", "--timeout", "30s");
        Assert.True(request.ExitCode == 0, $"{request}\n{system.Diagnostics()}");

        var mine = await Dw("leases", "--instance", "instance-l", "--json");
        Assert.True(mine.ExitCode == 0, mine.ToString());
        var lease = Assert.Single(mine.Json.GetProperty("leases").EnumerateArray());
        Assert.Equal((leaseId, "Granted", DwSystem.Pool), (lease.GetProperty("leaseId").GetString(),
            lease.GetProperty("state").GetString(), lease.GetProperty("pool").GetString()));
        Assert.Equal(request.Json.GetProperty("workerId").GetString(), lease.GetProperty("workerId").GetString());

        var table = await Dw("leases", "--pool", DwSystem.Pool);
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.StartsWith("LEASE", table.Stdout);
        Assert.Contains(table.Stdout.Split('\n'),
            line => line.StartsWith(leaseId) && line.Contains("instance-l") && line.Contains("Granted"));
        Assert.DoesNotContain("instance-l", (await Dw("leases", "--instance", "instance-nobody")).Stdout);

        await Dw("lease", "release", "--lease-id", leaseId, "--instance", "instance-l");
    }

    [Fact]
    public async Task Set_size_takes_effect_and_set_lifecycle_is_accepted()
    {
        var resize = await Dw("pool", "set-size", "--pool", DwSystem.SizedPool, "--hot-target", "1", "--max-workers",
            "4", "--json");
        Assert.True(resize.ExitCode == 0, resize.ToString());
        Assert.True(resize.Json.GetProperty("applied").GetBoolean());

        var status = (await Dw("pool", "status", "--pool", DwSystem.SizedPool, "--json")).Json.GetProperty("pools")[0];
        Assert.Equal((1, 4), (status.GetProperty("hotTarget").GetInt32(), status.GetProperty("maxWorkers").GetInt32()));
        // The new hot target is acted on: a worker is provisioned for the pool.
        await Eventually.True(
            async () => (await Dw("workers", "--pool", DwSystem.SizedPool, "--json")).Json.GetProperty("workers")
                .GetArrayLength() == 1,
            TimeSpan.FromSeconds(20),
            "a hot worker in the resized pool",
            system.Diagnostics);

        var lifecycle = await Dw("instance", "set-lifecycle", "--instance", "instance-b", "--idle-timeout", "30m",
            "--max-lease-duration", "2h");
        Assert.True(lifecycle.ExitCode == 0, lifecycle.ToString());
        await Eventually.True(
            async () => await system.Database.ScalarAsync(
                "SELECT count(*) FROM instance_lifecycles WHERE \"InstanceId\" = 'instance-b' AND \"IdleTimeout\" = "
                    + "interval '30 minutes' AND \"MaxLeaseDuration\" = interval '2 hours' AND \"MaxWorkerAge\" IS "
                    + "NULL") == 1,
            TimeSpan.FromSeconds(20),
            "the service to store instance-b's lifecycle",
            system.Diagnostics);
    }

    [Fact]
    public async Task Pool_image_rolls_every_worker_out_to_the_new_image_and_status_shows_the_progress()
    {
        const string newImage = DwSystem.RolloutImage + "-v2";
        await Eventually.True(
            async () => await system.Database.ScalarAsync($"SELECT count(*) FROM workers WHERE \"Pool\" = "
                + $"'{DwSystem.RolloutPool}' AND \"CurrentState\" = 'Ready'") == 2,
            TimeSpan.FromSeconds(30),
            "two hot workers of the configured image",
            system.Diagnostics);
        // One of them leased: it keeps its lease through the rollout and is replaced when released.
        var lease = await Dw("lease", "request", "--instance", "instance-g", "--thumbprint", Thumbprint, "--pool",
            DwSystem.RolloutPool, "--wait", "--json");
        Assert.True(lease.ExitCode == 0, lease.ToString());
        var leasedWorker = lease.Json.GetProperty("workerId").GetString();

        var rollout = await Dw("pool", "image", DwSystem.RolloutPool, newImage, "--json");

        Assert.True(rollout.ExitCode == 0, rollout.ToString());
        Assert.True(rollout.Json.GetProperty("applied").GetBoolean());
        Assert.Equal(newImage, rollout.Json.GetProperty("image").GetString());
        await Eventually.True(
            async () => await system.Database.ScalarAsync($"SELECT count(*) FROM workers WHERE \"Pool\" = "
                + $"'{DwSystem.RolloutPool}' AND \"CurrentState\" = 'Ready' AND \"Image\" = '{newImage}'") == 2,
            TimeSpan.FromSeconds(30),
            "two hot workers of the new image",
            system.Diagnostics);
        var during =
            (await Dw("pool", "status", "--pool", DwSystem.RolloutPool, "--json")).Json.GetProperty("pools")[0];
        Assert.Equal((newImage, 1),
            (during.GetProperty("image").GetString(), during.GetProperty("outdatedWorkers").GetInt32()));
        Assert.Equal(1L, await system.Database.ScalarAsync($"SELECT count(*) FROM workers WHERE \"CorrelationId\" = "
            + $"'{leasedWorker}' AND \"CurrentState\" = 'Leased'"));

        var release = await Dw("lease", "release", "--lease-id", lease.Json.GetProperty("leaseId").GetString()!,
            "--instance", "instance-g");
        Assert.True(release.ExitCode == 0, release.ToString());

        await Eventually.True(
            async () => (await Dw("pool", "status", "--pool", DwSystem.RolloutPool, "--json"))
                .Json.GetProperty("pools")[0].GetProperty("outdatedWorkers").GetInt32() == 0,
            TimeSpan.FromSeconds(30),
            "no worker left on the old image",
            system.Diagnostics);
        Assert.Equal(0L, await system.Database.ScalarAsync(
            $"SELECT count(*) FROM workers WHERE \"Pool\" = '{DwSystem.RolloutPool}' AND \"Image\" <> '{newImage}' AND "
                + $"\"CurrentState\" <> 'Reaping'"));
        Assert.Contains(newImage, (await Dw("pool", "status", "--pool", DwSystem.RolloutPool)).Stdout);
        Assert.Empty(await system.Broker.NonEmptyErrorQueuesAsync());
        Assert.Equal(3, (await Dw("pool", "image", "no-such-pool", newImage)).ExitCode);
    }

    [Fact]
    public async Task Instance_remove_revokes_the_instance_s_lease_and_deletes_its_worker()
    {
        var granted = await Dw("lease", "request", "--instance", "instance-e", "--thumbprint", Thumbprint, "--pool",
            DwSystem.Pool, "--wait", "--json");
        Assert.True(granted.ExitCode == 0, granted.ToString());
        var workerId = granted.Json.GetProperty("workerId").GetString();

        var removed = await Dw("instance", "remove", "--instance", "instance-e", "--reason", "test", "--json");
        Assert.True(removed.ExitCode == 0, removed.ToString());
        Assert.Equal((1, 1), (removed.Json.GetProperty("leasesRevoked").GetInt32(),
            removed.Json.GetProperty("workersDeleted").GetInt32()));
        await Eventually.True(
            async () => await system.Database.ScalarAsync(
                $"SELECT count(*) FROM workers WHERE \"CorrelationId\" = '{workerId}'") == 0,
            TimeSpan.FromSeconds(20),
            "instance-e's worker deleted",
            system.Diagnostics);

        var again = await Dw("instance", "remove", "--instance", "instance-e");
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("0 lease(s) revoked, 0 worker(s) deleted", again.Stdout);
    }

    [Fact]
    public async Task An_unknown_pool_is_rejected_with_its_own_exit_code()
    {
        var request = await Dw("lease", "request", "--instance", "instance-c", "--thumbprint", Thumbprint, "--pool",
            "no-such-pool", "--wait", "--json");
        Assert.True(request.ExitCode == 3, request.ToString());
        Assert.Equal(("rejected", "UnknownPool"),
            (request.Json.GetProperty("outcome").GetString(), request.Json.GetProperty("reason").GetString()));

        var human = await Dw("lease", "request", "--instance", "instance-c", "--thumbprint", Thumbprint, "--pool",
            "no-such-pool", "--wait");
        Assert.True(human.ExitCode == 3, human.ToString());
        Assert.Contains("UnknownPool", human.Stdout);

        var status = await Dw("pool", "status", "--pool", "no-such-pool");
        Assert.True(status.ExitCode == 3, status.ToString());
        var resize = await Dw("pool", "set-size", "--pool", "no-such-pool", "--hot-target", "1", "--max-workers", "1");
        Assert.True(resize.ExitCode == 3, resize.ToString());
    }

    [Fact]
    public async Task Without_wait_the_request_is_only_published_and_its_lease_id_printed()
    {
        var request = await Dw("lease", "request", "--instance", "instance-d", "--thumbprint", Thumbprint, "--pool",
            DwSystem.Pool, "--json");
        Assert.True(request.ExitCode == 0, request.ToString());
        Assert.Equal("requested", request.Json.GetProperty("outcome").GetString());
        var leaseId = request.Json.GetProperty("leaseId").GetString();

        // The service got it: asking again with --wait and the same id gets the lease's one answer.
        var answer = await Dw("lease", "request", "--instance", "instance-d", "--thumbprint", Thumbprint, "--pool",
            DwSystem.Pool, "--lease-id", leaseId!, "--wait", "--json");
        Assert.True(answer.ExitCode == 0, answer.ToString());
        Assert.Equal(leaseId, answer.Json.GetProperty("leaseId").GetString());
        Assert.True(
            (await Dw("lease", "release", "--lease-id", leaseId!, "--instance", "instance-d")).ExitCode == 0,
            "release of instance-d's lease");
    }

    [Fact]
    public async Task A_bad_thumbprint_is_a_usage_error_before_anything_is_sent()
    {
        // The broker given is unreachable: reaching it would exit 5, so exit 2 proves nothing was attempted.
        var run = await CliRun.RunAsync(null, "lease", "request", "--instance", "instance-e", "--thumbprint",
            "abc; rm -rf /", "--pool", DwSystem.Pool,
            "--rabbitmq", "amqp://dw:dw@127.0.0.1:1/");
        Assert.True(run.ExitCode == 2, run.ToString());
        Assert.Contains("thumbprint", run.Stderr);

        var missing = await Dw("lease", "request", "--instance", "instance-e");
        Assert.True(missing.ExitCode == 2, missing.ToString());
        var noBroker = await CliRun.RunAsync(null, "pool", "status");
        Assert.True(noBroker.ExitCode == 2, noBroker.ToString());
        Assert.Contains("DW_RABBITMQ", noBroker.Stderr);
    }

    [Fact]
    public async Task An_unreachable_broker_has_its_own_exit_code_quickly()
    {
        var run =
            await CliRun.RunAsync(null, "pool", "status", "--rabbitmq", $"amqp://dw:dw@{TestServers.RabbitMqHost}:1/");

        Assert.True(run.ExitCode == 5, run.ToString());
        Assert.Contains("unreachable", run.Stderr);
        // Quickly: well before the 10 s connect deadline (the margin is for a cold start on a loaded machine).
        Assert.True(run.Elapsed < TimeSpan.FromSeconds(9), run.ToString());

        var wrongPassword = await CliRun.RunAsync(null, "workers", "--rabbitmq",
            $"amqp://{TestServers.RabbitMqUser}:wrong-password@{TestServers.RabbitMqHost}:5672/");
        Assert.True(wrongPassword.ExitCode == 5, wrongPassword.ToString());
        Assert.DoesNotContain("wrong-password", wrongPassword.Stderr);
    }

    [Fact]
    public async Task No_answer_within_the_timeout_has_its_own_exit_code_and_keeps_the_lease_id()
    {
        // A virtual host where no service listens: the request is published and nobody answers.
        var empty = new RabbitMqTestVirtualHost();
        await empty.InitializeAsync();
        try
        {
            var uri = $"amqp://{TestServers.RabbitMqUser}:{TestServers.RabbitMqPassword}"
                + $"@{TestServers.RabbitMqHost}:5672/{Uri.EscapeDataString(empty.Name)}";
            var leaseId = Guid.NewGuid().ToString();
            var run = await CliRun.RunAsync(null, "lease", "request", "--instance", "instance-f", "--thumbprint",
                Thumbprint, "--pool", DwSystem.Pool,
                "--lease-id", leaseId, "--wait", "--json", "--timeout", "5s", "--rabbitmq", uri);

            Assert.True(run.ExitCode == 4, run.ToString());
            Assert.Equal(("timedOut", leaseId),
                (run.Json.GetProperty("outcome").GetString(), run.Json.GetProperty("leaseId").GetString()));
        }
        finally
        {
            await empty.DisposeAsync();
        }
    }
}
