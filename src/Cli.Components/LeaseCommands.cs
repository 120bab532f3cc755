using System.CommandLine;
using DynamicWorkers.Client;
using DynamicWorkers.Contracts;

namespace DynamicWorkers.Cli;

/// <summary><c>dw lease request</c> and <c>dw lease release</c>: what an instance does, from a shell.</summary>
public static class LeaseCommands
{
    public static Command Create()
    {
        var lease = new Command("lease", "Request or release a worker for an instance");
        lease.Subcommands.Add(Request());
        lease.Subcommands.Add(Release());
        return lease;
    }

    static Command Request()
    {
        var instance = new Option<string>("--instance") { Description = "The instance id", Required = true };
        var thumbprint = new Option<string>("--thumbprint")
        {
            Description = "SHA-1 (40) or SHA-256 (64) hex thumbprint of the instance's certificate",
            Required = true,
        };
        var pool = new Option<string>("--pool") { Description = "The pool, e.g. ubuntu-22.04", Required = true };
        var leaseId = new Option<Guid?>("--lease-id")
        {
            Description = "The lease id (the idempotency key): repeat a request with the same id to get its one "
                + "answer; new if omitted",
        };
        var task = new Option<string?>("--task") { Description = "The task id, for the logs" };
        var wait = new Option<bool>("--wait")
        {
            Description = "Wait for the answer (up to --timeout): exit 0 granted, 3 rejected, 4 no answer yet",
        };
        var command = new Command("request", "Ask for a worker that trusts the instance's certificate")
        {
            instance, thumbprint, pool, leaseId, task, wait,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            LeaseRequested request;
            try
            {
                request = DynamicWorkersClient.NewLeaseRequest(
                    parse.GetRequiredValue(instance), parse.GetRequiredValue(thumbprint), parse.GetRequiredValue(pool),
                    parse.GetValue(leaseId), parse.GetValue(task));
            }
            catch (ArgumentException e)
            {
                Connection.OutputOf(parse)
                    .Error($"invalid lease request: {e.Message.Replace($" (Parameter '{e.ParamName}')", "")}");
                return ExitCodes.Usage;
            }

            return await Connection.RunAsync(parse, cancellationToken, async (client, output, timeout, ct) =>
            {
                if (!parse.GetValue(wait))
                {
                    await client.PublishLeaseRequestAsync(request, ct);
                    Write(output, new { outcome = "requested", leaseId = request.LeaseId,
                        instanceId = request.InstanceId, pool = request.Pool },
                        ("outcome", "requested (not waiting for the answer)"), ("lease", request.LeaseId.ToString()));
                    return ExitCodes.Success;
                }

                try
                {
                    switch (await client.RequestLeaseAsync(request, timeout, ct))
                    {
                        case LeaseResult.Granted { Lease: var g }:
                            Write(output, new
                            {
                                outcome = "granted", g.LeaseId, g.InstanceId, g.WorkerId, g.WorkerAddress,
                                g.WorkerThumbprint, g.Reused, g.GrantedAt, g.ExpiresAt,
                            },
                                ("outcome", "granted"), ("lease", g.LeaseId.ToString()),
                                ("worker", g.WorkerId.ToString()), ("address", g.WorkerAddress),
                                ("worker thumbprint", g.WorkerThumbprint), ("reused", g.Reused ? "yes" : "no"),
                                ("granted at", g.GrantedAt.ToString("u")), ("expires at", g.ExpiresAt.ToString("u")));
                            return ExitCodes.Success;
                        case LeaseResult.Rejected { Rejection: var r }:
                            Write(output, new { outcome = "rejected", r.LeaseId, r.InstanceId, r.Reason, r.Detail },
                                ("outcome", "rejected"), ("lease", r.LeaseId.ToString()), ("reason", r.Reason),
                                ("detail", r.Detail));
                            return ExitCodes.Rejected;
                        default:
                            throw new InvalidOperationException("unknown lease result");
                    }
                }
                catch (DynamicWorkersTimeoutException e) when (output.Json)
                {
                    // Scripts get the lease id to ask again with.
                    output.WriteJson(new { outcome = "timedOut", leaseId = request.LeaseId, detail = e.Message });
                    throw;
                }
            });
        });
        return command;
    }

    static Command Release()
    {
        var leaseId = new Option<Guid>("--lease-id") { Description = "The lease to release", Required = true };
        var instance = new Option<string>("--instance")
        {
            Description = "The instance that holds the lease", Required = true,
        };
        var command = new Command("release",
            "Release a lease: its worker goes idle, still trusting only that instance") { leaseId, instance };
        command.SetAction((parse, cancellationToken) => Connection.RunAsync(parse, cancellationToken,
            async (client, output, _, ct) =>
        {
            var released = new LeaseReleased(parse.GetValue(leaseId), parse.GetRequiredValue(instance));
            await client.ReleaseAsync(released.LeaseId, released.InstanceId, ct);
            Write(output, new { outcome = "released", released.LeaseId, released.InstanceId },
                ("outcome", "release published"), ("lease", released.LeaseId.ToString()));
            return ExitCodes.Success;
        }));
        return command;
    }

    static void Write(Output output, object json, params (string, string)[] fields)
    {
        if (output.Json)
        {
            output.WriteJson(json);
        }
        else
        {
            output.WriteFields(fields);
        }
    }
}
