namespace DynamicWorkers.Bench;

/// <summary>
/// CPU time from /proc (Linux; clock ticks of 10 ms): of one process, and of the processes the run shares the machine
/// with but does not start (the broker, the database, the benchmark's own client), so that a profile shows whether the
/// services or the servers take the cores.
/// </summary>
public static class ProcessCpu
{
    /// <summary>User plus system CPU time of a process so far; with its waited-for children's when asked.</summary>
    public static long Milliseconds(int pid, bool withExitedChildren = false)
    {
        var fields = StatFields(pid);
        var ticks = long.Parse(fields[11]) + long.Parse(fields[12]);
        if (withExitedChildren)
        {
            ticks += long.Parse(fields[13]) + long.Parse(fields[14]);
        }

        return ticks * 10;
    }

    /// <summary>
    /// RabbitMQ (its Erlang VM), PostgreSQL (every backend, and through the postmaster's children's time those that
    /// exited), this benchmark, and the whole machine's busy time. Whole servers: anything else using them counts too.
    /// </summary>
    public static IReadOnlyDictionary<string, long> Servers()
    {
        long rabbitMq = 0, postgres = 0;
        foreach (var (pid, command, parent) in Processes())
        {
            try
            {
                if (command == "beam.smp")
                {
                    rabbitMq += Milliseconds(pid);
                }
                else if (command == "postgres")
                {
                    // The postmaster (its parent is not a postgres process) has reaped every backend that ended.
                    postgres += Milliseconds(pid, withExitedChildren: !IsPostgres(parent));
                }
            }
            catch (IOException)
            {
                // Ended meanwhile (a backend): the postmaster counts it from now on.
            }
        }

        return new Dictionary<string, long>
        {
            ["RabbitMQ"] = rabbitMq,
            ["PostgreSQL"] = postgres,
            ["bench"] = Milliseconds(Environment.ProcessId),
            ["whole machine"] = MachineBusyMilliseconds(),
        };
    }

    static bool IsPostgres(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/comm").Trim() == "postgres";
        }
        catch (IOException)
        {
            return false;
        }
    }

    static IEnumerable<(int Pid, string Command, int Parent)> Processes()
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out var pid))
            {
                continue;
            }

            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(directory, "stat"));
            }
            catch (IOException)
            {
                continue; // ended meanwhile
            }

            var open = stat.IndexOf('(');
            var close = stat.LastIndexOf(')');
            yield return (pid, stat[(open + 1)..close], int.Parse(stat[(close + 2)..].Split(' ')[1]));
        }
    }

    // Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the 12th and
    // 13th, the children's cutime and cstime the 14th and 15th.
    static string[] StatFields(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
    }

    // user + nice + system + irq + softirq + steal over all cores, from the first line of /proc/stat.
    static long MachineBusyMilliseconds()
    {
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (long.Parse(cpu[1]) + long.Parse(cpu[2]) + long.Parse(cpu[3]) + long.Parse(cpu[6]) + long.Parse(cpu[7]) + long.Parse(cpu[8])) * 10;
    }
}
