namespace DynamicWorkers.Bench;

/// <summary>
/// CPU time from /proc (Linux; clock ticks of 10 ms): of one process, and of the processes the run shares the machine
/// with but does not start (the broker, the database, the benchmark's own client), so that a profile shows whether the
/// services or the servers take the cores.
/// </summary>
public static class ProcessCpu
{
    /// <summary>User plus system CPU time of a process so far.</summary>
    public static long Milliseconds(int pid) => Stat.Read(pid).Milliseconds;

    /// <summary>
    /// RabbitMQ (its Erlang VM), PostgreSQL (every backend, and through the postmaster's children's time those that
    /// exited), this benchmark, and the whole machine's busy time. Whole servers: anything else using them counts too.
    /// </summary>
    public static IReadOnlyDictionary<string, long> Servers()
    {
        var processes = Processes().ToList();
        var postgres = processes.Where(p => p.Command == "postgres").ToList();
        var postgresIds = postgres.Select(p => p.Pid).ToHashSet();
        return new Dictionary<string, long>
        {
            ["RabbitMQ"] = processes.Where(p => p.Command == "beam.smp").Sum(p => p.Milliseconds),
            // The postmaster (its parent is not a postgres process) has reaped every backend that ended.
            ["PostgreSQL"] = postgres.Sum(p => p.Milliseconds
                + (postgresIds.Contains(p.Parent) ? 0 : p.ChildrenMilliseconds)),
            ["bench"] = Milliseconds(Environment.ProcessId),
            ["whole machine"] = MachineBusyMilliseconds(),
        };
    }

    /// <summary>
    /// CPU time so far of each PostgreSQL backend connected to one database (its process title names it), by process
    /// id: the database work of that database's clients alone, whoever else uses the server. See <see cref="Between"/>.
    /// </summary>
    public static IReadOnlyDictionary<int, long> PostgresBackends(string database)
    {
        var backends = new Dictionary<int, long>();
        foreach (var process in Processes().Where(p => p.Command == "postgres"))
        {
            try
            {
                if (File.ReadAllText($"/proc/{process.Pid}/cmdline")
                    .Contains($" {database} ", StringComparison.Ordinal))
                {
                    backends[process.Pid] = process.Milliseconds;
                }
            }
            catch (IOException)
            {
                // ended meanwhile
            }
        }

        return backends;
    }

    /// <summary>
    /// CPU time the backends took between two readings: a backend that started in between counts whole (also one that
    /// got the id of one that ended), one that ended in between (a pooled connection closed) only up to the first
    /// reading: what it took after is not known.
    /// </summary>
    public static long Between(IReadOnlyDictionary<int, long> before, IReadOnlyDictionary<int, long> after)
        => after.Sum(a => before.TryGetValue(a.Key, out var earlier) && earlier <= a.Value ? a.Value - earlier
            : a.Value);

    static IEnumerable<Stat> Processes()
    {
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out var pid))
            {
                continue;
            }

            Stat stat;
            try
            {
                stat = Stat.Read(pid);
            }
            catch (IOException)
            {
                continue; // ended meanwhile (a backend: the postmaster counts it from now on)
            }

            yield return stat;
        }
    }

    sealed record Stat(int Pid, string Command, int Parent, long Milliseconds, long ChildrenMilliseconds)
    {
        // After the command name, which is in parentheses and may hold spaces, the fields from the 3rd on: the parent
        // is the 4th, utime and stime the 14th and 15th, the waited-for children's cutime and cstime the 16th and 17th.
        public static Stat Read(int pid)
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var close = stat.LastIndexOf(')');
            var fields = stat[(close + 2)..].Split(' ');
            return new Stat(
                pid,
                stat[(stat.IndexOf('(') + 1)..close],
                int.Parse(fields[1]),
                (long.Parse(fields[11]) + long.Parse(fields[12])) * 10,
                (long.Parse(fields[13]) + long.Parse(fields[14])) * 10);
        }
    }

    /// <summary>The whole machine's busy time: user + nice + system + irq + softirq + steal over all cores, from the
    /// first line of /proc/stat.</summary>
    public static long MachineBusyMilliseconds()
    {
        var cpu = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (long.Parse(cpu[1]) + long.Parse(cpu[2]) + long.Parse(cpu[3]) + long.Parse(cpu[6]) + long.Parse(cpu[7])
            + long.Parse(cpu[8])) * 10;
    }
}
