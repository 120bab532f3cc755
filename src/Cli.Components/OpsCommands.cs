using System.CommandLine;
using System.Diagnostics;
using DynamicWorkers.Contracts;

namespace DynamicWorkers.Cli;

/// <summary>
/// <c>dw pool status|set-size|image</c>, <c>dw workers</c>, <c>dw leases</c>, <c>dw instance set-lifecycle|remove</c>:
/// what an operator does.
/// </summary>
public static class OpsCommands
{
    /// <summary>The service's own bound on lifecycle limits.</summary>
    static readonly TimeSpan MaxLifecycleLimit = TimeSpan.FromDays(365);

    public static Command Pool()
    {
        var pool = new Command("pool", "Show, size or roll out the worker pools");
        pool.Subcommands.Add(Status());
        pool.Subcommands.Add(SetSize());
        pool.Subcommands.Add(SetImage());
        return pool;
    }

    static Command Status()
    {
        var name = new Option<string?>("--pool") { Description = "Only this pool" };
        var command = new Command("status",
            "Workers by state, sizes, waiting leases, image and tools of each pool") { name };
        command.SetAction((parse, cancellationToken) => Connection.RunAsync(parse, cancellationToken,
            async (client, output, _, ct) =>
        {
            var status = await client.GetPoolStatusAsync(parse.GetValue(name), ct);
            if (parse.GetValue(name) is { } wanted && status.Pools.Count == 0)
            {
                output.Error($"unknown pool '{wanted}'");
                return ExitCodes.Rejected;
            }

            if (output.Json)
            {
                output.WriteJson(status);
            }
            else
            {
                output.WriteTable(
                    ["pool", "hot target", "max", "waiting", "workers", "image", "outdated", "tools"],
                    status.Pools.Select(p => (IReadOnlyList<string>)
                    [
                        p.Pool, p.HotTarget.ToString(), p.MaxWorkers.ToString(), p.WaitingLeases.ToString(),
                        p.WorkersByState.Count == 0
                            ? "-"
                            : string.Join(" ", p.WorkersByState.OrderBy(s => s.Key).Select(s => $"{s.Key}={s.Value}")),
                        p.Image, p.OutdatedWorkers.ToString(), string.Join(", ", p.Tools),
                    ]));
            }

            return ExitCodes.Success;
        }));
        return command;
    }

    static Command SetSize()
    {
        var name = new Option<string>("--pool") { Description = "The pool", Required = true };
        var hotTarget = new Option<int>("--hot-target")
        {
            Description = "Workers kept ready, trusting no one", Required = true,
        };
        var maxWorkers = new Option<int>("--max-workers")
        {
            Description = "Live workers never above this", Required = true,
        };
        var command = new Command("set-size",
            "Change a pool's size at run time (persisted); waits until the service applied it")
        {
            name, hotTarget, maxWorkers,
        };
        command.Validators.Add(result =>
        {
            var hot = result.GetValue(hotTarget);
            var max = result.GetValue(maxWorkers);
            if (hot < 0 || max < 0 || hot > max)
            {
                result.AddError($"sizes must be 0 <= --hot-target <= --max-workers (got {hot} and {max})");
            }
        });
        command.SetAction((parse, cancellationToken) => Connection.RunAsync(parse, cancellationToken,
            async (client, output, timeout, ct) =>
        {
            var pool = parse.GetRequiredValue(name);
            var (hot, max) = (parse.GetValue(hotTarget), parse.GetValue(maxWorkers));
            var elapsed = Stopwatch.StartNew();

            // An unknown pool would only land in the service's _error queue: say so here instead.
            if ((await client.GetPoolStatusAsync(pool, ct)).Pools.Count == 0)
            {
                output.Error($"unknown pool '{pool}'");
                return ExitCodes.Rejected;
            }

            await client.SetPoolSizeAsync(pool, hot, max, ct);
            while (true)
            {
                var current = (await client.GetPoolStatusAsync(pool, ct)).Pools.Single();
                if (current.HotTarget == hot && current.MaxWorkers == max)
                {
                    if (output.Json)
                    {
                        output.WriteJson(new { pool = current.Pool, hotTarget = hot, maxWorkers = max,
                            applied = true });
                    }
                    else
                    {
                        output.WriteLine($"pool {current.Pool}: hot target {hot}, max workers {max} (applied)");
                    }

                    return ExitCodes.Success;
                }

                if (elapsed.Elapsed > timeout)
                {
                    output.Error($"pool {pool} still shows hot target {current.HotTarget}, "
                        + $"max workers {current.MaxWorkers} after {timeout.TotalSeconds:0.#} s");
                    return ExitCodes.TimedOut;
                }

                // Polling the service's status: there is no acknowledgement message.
                await Task.Delay(TimeSpan.FromMilliseconds(200), ct);
            }
        }));
        return command;
    }

    static Command SetImage()
    {
        var name = new Argument<string>("pool") { Description = "The pool" };
        var image = new Argument<string>("image")
        {
            Description = "The new image: marketplace reference (publisher:offer:sku:version) or gallery image id",
        };
        var command = new Command("image",
            "Roll a pool out to another image (persisted): hot and idle workers replaced within the pool's surge, "
            + "leased ones after their lease; waits until the service applied it")
        {
            name, image,
        };
        command.SetAction((parse, cancellationToken) => Connection.RunAsync(parse, cancellationToken,
            async (client, output, timeout, ct) =>
        {
            var pool = parse.GetRequiredValue(name);
            var wanted = parse.GetRequiredValue(image);
            var elapsed = Stopwatch.StartNew();

            // An unknown pool would only land in the service's _error queue: say so here instead.
            if ((await client.GetPoolStatusAsync(pool, ct)).Pools.Count == 0)
            {
                output.Error($"unknown pool '{pool}'");
                return ExitCodes.Rejected;
            }

            await client.SetPoolImageAsync(pool, wanted, ct);
            while (true)
            {
                var current = (await client.GetPoolStatusAsync(pool, ct)).Pools.Single();
                if (current.Image == wanted)
                {
                    if (output.Json)
                    {
                        output.WriteJson(new { pool = current.Pool, image = wanted,
                            outdatedWorkers = current.OutdatedWorkers, applied = true });
                    }
                    else
                    {
                        output.WriteLine($"pool {current.Pool}: image {wanted} (applied); {current.OutdatedWorkers} "
                            + "worker(s) on an older image being replaced ('dw pool status' shows the progress)");
                    }

                    return ExitCodes.Success;
                }

                if (elapsed.Elapsed > timeout)
                {
                    output.Error($"pool {pool} still shows image {current.Image} after {timeout.TotalSeconds:0.#} s");
                    return ExitCodes.TimedOut;
                }

                // Polling the service's status: there is no acknowledgement message.
                await Task.Delay(TimeSpan.FromMilliseconds(200), ct);
            }
        }));
        return command;
    }

    public static Command Workers()
    {
        var pool = new Option<string?>("--pool") { Description = "Only workers of this pool" };
        var instance = new Option<string?>("--instance") { Description = "Only workers trusting this instance" };
        var command = new Command("workers",
            "List the workers: state, the instance each trusts, its current lease") { pool, instance };
        command.SetAction((parse, cancellationToken) => Connection.RunAsync(parse, cancellationToken,
            async (client, output, _, ct) =>
        {
            var list = await client.GetWorkersAsync(parse.GetValue(pool), parse.GetValue(instance), ct);
            if (output.Json)
            {
                output.WriteJson(list);
            }
            else
            {
                output.WriteTable(
                    ["worker", "pool", "state", "instance", "lease", "provisioned", "last released", "leases"],
                    list.Workers.Select(w => (IReadOnlyList<string>)
                    [
                        w.WorkerId.ToString(), w.Pool, w.State, w.TrustedInstanceId ?? "-",
                        w.CurrentLeaseId?.ToString() ?? "-", w.ProvisionedAt.ToString("u"),
                        w.LastLeaseEndedAt?.ToString("u") ?? "-", w.LeaseCount.ToString(),
                    ]));
            }

            return ExitCodes.Success;
        }));
        return command;
    }

    public static Command Leases()
    {
        var pool = new Option<string?>("--pool") { Description = "Only leases of this pool" };
        var instance = new Option<string?>("--instance")
        {
            Description = "Only leases of this instance (an instance user must give its own)",
        };
        var command = new Command("leases",
            "List leases, open first, then the most recently ended: state, worker, how it was served")
        {
            pool, instance,
        };
        command.SetAction((parse, cancellationToken) => Connection.RunAsync(parse, cancellationToken,
            async (client, output, _, ct) =>
        {
            var list = await client.GetLeasesAsync(parse.GetValue(pool), parse.GetValue(instance), ct);
            if (output.Json)
            {
                output.WriteJson(list);
            }
            else
            {
                output.WriteTable(
                    ["lease", "instance", "pool", "state", "worker", "path", "received", "ended", "reason"],
                    list.Leases.Select(l => (IReadOnlyList<string>)
                    [
                        l.LeaseId.ToString(), l.InstanceId, l.Pool, l.State, l.WorkerId?.ToString() ?? "-", Path(l),
                        l.ReceivedAt.ToString("u"), l.EndedAt?.ToString("u") ?? "-", l.Reason ?? "-",
                    ]));
            }

            return ExitCodes.Success;
        }));
        return command;

        // The same three paths as the dw_lease_wait_seconds histogram's "path" tag.
        static string Path(LeaseSummary lease)
            => lease.GrantedAt is null ? "-" : lease.Reused ? "reuse" : lease.Waited ? "cold" : "hot";
    }

    /// <summary><c>dw instance remove</c>: offboarding; the broker user, if any, is removed separately.</summary>
    static Command RemoveInstance()
    {
        var id = new Option<string>("--instance") { Description = "The instance id", Required = true };
        var reason = new Option<string?>("--reason") { Description = "Why, for the service's log" };
        var command = new Command("remove",
            "Offboard an instance: revoke its open leases (InstanceRemoved), delete its workers, drop its settings")
        {
            id, reason,
        };
        command.SetAction((parse, cancellationToken) => Connection.RunAsync(parse, cancellationToken,
            async (client, output, _, ct) =>
        {
            var removed = await client.RemoveInstanceAsync(parse.GetRequiredValue(id), parse.GetValue(reason), ct);
            if (output.Json)
            {
                output.WriteJson(new { outcome = "removed", removed.InstanceId, removed.LeasesRevoked,
                    removed.WorkersDeleted });
            }
            else
            {
                output.WriteLine($"instance {removed.InstanceId} removed: {removed.LeasesRevoked} lease(s) revoked, "
                    + $"{removed.WorkersDeleted} worker(s) deleted");
            }

            return ExitCodes.Success;
        }));
        return command;
    }

    public static Command Instance()
    {
        var instance = new Command("instance", "Per-instance settings");
        var id = new Option<string>("--instance") { Description = "The instance id", Required = true };
        var idle = LifecycleOption("--idle-timeout", "Delete the instance's idle workers after this");
        var maxAge = LifecycleOption("--max-worker-age",
            "Delete the instance's workers this long after provisioning (revoking a lease)");
        var maxLease = LifecycleOption("--max-lease-duration", "Revoke a lease never released after this");
        var setLifecycle = new Command("set-lifecycle",
            "Override an instance's lifecycle limits (an option left out stays as it is)")
        {
            id, idle, maxAge, maxLease,
        };
        setLifecycle.Validators.Add(result =>
        {
            if (result.GetValue(idle) is null && result.GetValue(maxAge) is null && result.GetValue(maxLease) is null)
            {
                result.AddError("give at least one of --idle-timeout, --max-worker-age, --max-lease-duration");
            }
        });
        setLifecycle.SetAction((parse, cancellationToken) => Connection.RunAsync(parse, cancellationToken,
            async (client, output, _, ct) =>
        {
            var command = new SetInstanceLifecycle(parse.GetRequiredValue(id), parse.GetValue(idle),
                parse.GetValue(maxAge), parse.GetValue(maxLease));
            await client.SetInstanceLifecycleAsync(command, ct);
            if (output.Json)
            {
                output.WriteJson(new { outcome = "published", command.InstanceId, command.IdleTimeout,
                    command.MaxWorkerAge, command.MaxLeaseDuration });
            }
            else
            {
                output.WriteLine($"lifecycle of {command.InstanceId} published: "
                    + $"idle timeout {Show(command.IdleTimeout)}, max worker age {Show(command.MaxWorkerAge)}, "
                    + $"max lease duration {Show(command.MaxLeaseDuration)}");
            }

            return ExitCodes.Success;
        }));
        instance.Subcommands.Add(setLifecycle);
        instance.Subcommands.Add(RemoveInstance());
        instance.Subcommands.Add(BrokerCommands.AddInstance());
        return instance;

        static string Show(TimeSpan? value) => value?.ToString() ?? "unchanged";
    }

    static Option<TimeSpan?> LifecycleOption(string name, string description) => new(name)
    {
        Description = description + " (e.g. 30m, 12h, 3d; at most 365 days)",
        CustomParser = result =>
        {
            var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (Durations.TryParse(text, out var value) && value > TimeSpan.Zero && value <= MaxLifecycleLimit)
            {
                return value;
            }

            result.AddError($"{name}: '{text}' is not a duration above zero and at most 365 days");
            return null;
        },
    };
}
