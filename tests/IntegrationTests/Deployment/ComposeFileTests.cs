using System.Diagnostics;
using System.Text.RegularExpressions;
using DynamicWorkers.IntegrationTests.Support;
using YamlDotNet.Serialization;

namespace DynamicWorkers.IntegrationTests.Deployment;

/// <summary>
/// docker-compose.yml checked without a Docker engine: Debian's docker-compose 1.29 validates it (`config -q`)
/// and renders it (`config`), and the rendered file is held to what the deployment promises. What the validator
/// misses (a missing Dockerfile or project, durations) is checked here directly.
/// </summary>
public sealed class ComposeFileTests
{
    static readonly string Root = ServiceProcess.RepositoryRoot;
    static readonly string[] Deployables = ["lease-saga", "provisioner", "trust", "reaper"];
    static readonly string[] Scalable = ["provisioner", "trust", "reaper"];

    /// <summary>Placeholder secrets, as an operator's .env would give them.</summary>
    static readonly Dictionary<string, string> Secrets = new()
    {
        ["RABBITMQ_USER"] = "ops-user",
        ["RABBITMQ_PASSWORD"] = "rabbit-secret-from-env",
        ["MSSQL_SA_PASSWORD"] = "Sa-secret-from-env-1",
        ["DW_DB_USER"] = "dw_service",
        ["DW_DB_PASSWORD"] = "Db-secret-from-env-1",
        ["DW_LEASE_SAGA_PASSWORD"] = "lease-saga-secret-from-env",
        ["DW_PROVISIONER_PASSWORD"] = "provisioner-secret-from-env",
        ["DW_TRUST_PASSWORD"] = "trust-secret-from-env",
        ["DW_REAPER_PASSWORD"] = "reaper-secret-from-env",
        ["DW_OPERATOR_PASSWORD"] = "operator-secret-from-env",
    };

    [Fact]
    public async Task The_file_is_valid_for_docker_compose()
    {
        var (exit, _, stderr) = await ComposeAsync(Secrets, "config", "-q");
        Assert.True(exit == 0, stderr);
    }

    [Fact]
    public async Task A_missing_secret_stops_docker_compose_with_a_message()
    {
        await Task.WhenAll(Secrets.Keys.Select(async name =>
        {
            var (exit, _, stderr) =
                await ComposeAsync(Secrets.Where(s => s.Key != name).ToDictionary(), "config", "-q");
            Assert.True(exit != 0, $"{name} missing, yet config succeeded");
            Assert.Contains($"set {name} in .env", stderr);
        }));
    }

    [Fact]
    public async Task Every_service_is_built_configured_health_checked_and_started_in_order()
    {
        var services = await RenderedServicesAsync();

        Assert.Equal("rabbitmq:3-management", Text(services["rabbitmq"], "image"));
        Assert.Equal("mcr.microsoft.com/mssql/server:2022-latest", Text(services["sqlserver"], "image"));
        foreach (var name in new[] { "rabbitmq", "sqlserver" }.Concat(Deployables))
        {
            var test = Map(services[name], "healthcheck")["test"] as List<object>;
            Assert.True(test is { Count: > 1 }, $"{name} has no health check");
        }

        foreach (var name in Deployables)
        {
            var service = services[name];
            var build = Map(service, "build");
            Assert.Equal(Root, Path.GetFullPath((string)build["context"]));
            Assert.True(File.Exists(Path.Combine(Root, (string)build["dockerfile"])), $"{name}: Dockerfile missing");
            var project = (string)Map(build, "args")["PROJECT"];
            Assert.True(File.Exists(Path.Combine(Root, "src", project, $"{project}.csproj")),
                $"{name}: src/{project} is not a project");

            var env = Map(service, "environment");
            Assert.Equal("SqlServer", env["Database__Provider"]);
            Assert.StartsWith("Server=sqlserver,1433;", (string)env["ConnectionStrings__Default"]);
            Assert.Contains("User Id=dw_service;Password=Db-secret-from-env-1;",
                (string)env["ConnectionStrings__Default"]);
            // Each service is its own broker user (Tenancy), never the broker's administrator.
            Assert.Equal(("RabbitMq", "rabbitmq", $"dw-{name}", $"{name}-secret-from-env"),
                ((string)env["Transport"], (string)env["RabbitMq__Host"], (string)env["RabbitMq__Username"],
                    (string)env["RabbitMq__Password"]));
            Assert.Equal("Simulated", env["Cloud__Provider"]);
            // The hosts' own default is loopback, unreachable through the container's network.
            Assert.Equal("0.0.0.0", env["Http__Host"]);
            Assert.Contains("/readyz", string.Join(" ", (List<object>)Map(service, "healthcheck")["test"]));

            var dependsOn = Map(service, "depends_on");
            Assert.Equal("service_healthy", Map(dependsOn, "rabbitmq")["condition"]);
            Assert.Equal("service_completed_successfully", Map(dependsOn, "db-init")["condition"]);
            Assert.Equal("service_completed_successfully", Map(dependsOn, "broker-setup")["condition"]);
        }

        // The one-shot that makes those users: dw's own command, as the broker's administrator, after the broker is up.
        var setup = services["broker-setup"];
        Assert.Equal("Cli", Map(Map(setup, "build"), "args")["PROJECT"]);
        Assert.Equal(["broker", "setup"], ((List<object>)setup["command"]).Cast<string>());
        var setupEnv = Map(setup, "environment");
        Assert.Equal(("http://rabbitmq:15672", "ops-user", "rabbit-secret-from-env"),
            ((string)setupEnv["DW_RABBITMQ_MANAGEMENT"], (string)setupEnv["DW_RABBITMQ_MANAGEMENT_USER"],
                (string)setupEnv["DW_RABBITMQ_MANAGEMENT_PASSWORD"]));
        Assert.Equal("service_healthy", Map(Map(setup, "depends_on"), "rabbitmq")["condition"]);

        Assert.Equal("service_healthy", Map(Map(services["lease-saga"], "depends_on"), "sqlserver")["condition"]);
        // The young generation's budget the benchmark measured (docs/benchmark-rounds.md, eleventh round): LeaseSaga's
        // own, the Dockerfile's default for the rest.
        Assert.Equal("0x1000000", Map(Map(services["lease-saga"], "build"), "args")["GC_GEN0SIZE"]);
        Assert.Equal("service_healthy", Map(Map(services["db-init"], "depends_on"), "sqlserver")["condition"]);
        foreach (var name in Scalable)
        {
            Assert.False(Map(Map(services[name], "build"), "args").ContainsKey("GC_GEN0SIZE"),
                $"{name} sets GC_GEN0SIZE");
            Assert.Equal("service_healthy", Map(Map(services[name], "depends_on"), "lease-saga")["condition"]);
            // --scale needs both: a fixed container name or host port would collide on the second copy.
            Assert.False(services[name].ContainsKey("container_name"), $"{name} has a container_name");
            Assert.False(services[name].ContainsKey("ports"), $"{name} publishes host ports");
        }

        var rabbit = Map(services["rabbitmq"], "environment");
        Assert.Equal(("ops-user", "rabbit-secret-from-env"),
            ((string)rabbit["RABBITMQ_DEFAULT_USER"], (string)rabbit["RABBITMQ_DEFAULT_PASS"]));
    }

    [Fact]
    public void No_credential_is_written_in_the_repository_files()
    {
        var compose = File.ReadAllText(Path.Combine(Root, "docker-compose.yml"));
        Assert.DoesNotMatch(new Regex("guest", RegexOptions.IgnoreCase), compose);
        // Every password-like value is an environment reference that must be set.
        var values = Regex.Matches(compose, @"^\s*\w*(PASSWORD|PASS|Password)\s*:\s*(.+)$", RegexOptions.Multiline)
            .Concat(Regex.Matches(compose, @"Password=([^;]+);"))
            .Select(m => m.Groups[m.Groups.Count - 1].Value.Trim())
            .ToList();
        Assert.True(values.Count >= 4, $"found only {values.Count} password values");
        Assert.All(values, v => Assert.Matches(@"^\$\{\w+:\?[^}]+\}$", v));

        Assert.Contains(".env", File.ReadAllLines(Path.Combine(Root, ".gitignore")));
        var example = File.ReadAllText(Path.Combine(Root, ".env.example"));
        foreach (var name in Secrets.Keys)
        {
            Assert.Matches(new Regex($"^{name}=", RegexOptions.Multiline), example);
        }

        var dockerfile = File.ReadAllText(Path.Combine(Root, "Dockerfile"));
        Assert.Contains("install -y --no-install-recommends curl", dockerfile);
        Assert.Contains("USER app", dockerfile);
        // Start-up and memory as measured by the benchmark (docs/benchmark-rounds.md).
        Assert.Contains("-p:PublishReadyToRun=true", dockerfile);
        Assert.Contains("ARG GC_GEN0SIZE=0x400000", dockerfile);
        Assert.Contains("DOTNET_GCgen0size=${GC_GEN0SIZE}", dockerfile);
    }

    [Fact]
    public async Task The_cluster_file_adds_two_joined_nodes_and_gives_every_service_all_three_starting_at_different_ones()
    {
        var secrets = new Dictionary<string, string>(Secrets) { ["RABBITMQ_ERLANG_COOKIE"] = "cookie-from-env" };
        var services = await RenderedServicesAsync(secrets, Cluster);
        var nodes = new[] { "rabbitmq", "rabbitmq-2", "rabbitmq-3" };
        foreach (var node in nodes)
        {
            Assert.Equal("rabbitmq:3-management", Text(services[node], "image"));
            Assert.Equal("cookie-from-env", Map(services[node], "environment")["RABBITMQ_ERLANG_COOKIE"]);
            // Classic config peer discovery names the three nodes; every node reads it.
            Assert.Contains(((List<object>)services[node]["volumes"]).Cast<string>(),
                v => v.EndsWith(":/etc/rabbitmq/conf.d/20-cluster.conf:ro", StringComparison.Ordinal));
        }

        var peers = File.ReadAllText(Path.Combine(Root, "deploy", "rabbitmq", "cluster.conf"));
        Assert.Contains("cluster_formation.peer_discovery_backend = classic_config", peers);
        Assert.All(nodes, n => Assert.Contains($"= rabbit@{n}\n", peers.Replace("\r", "")));
        Assert.Equal(["rabbitmq-2", "rabbitmq-3"], nodes.Skip(1).Select(n => Text(services[n], "hostname")));
        Assert.All(nodes.Skip(1),
            n => Assert.Equal("service_healthy", Map(Map(services[n], "depends_on"), "rabbitmq")["condition"]));

        var firstNodes = new HashSet<string>();
        foreach (var name in Deployables)
        {
            var env = Map(services[name], "environment");
            var list = Enumerable.Range(0, 3).Select(i => (string)env[$"RabbitMq__ClusterNodes__{i}"]).ToList();
            Assert.Equal(nodes.Select(n => $"{n}:5672").Order(), list.Order());
            firstNodes.Add(list[0]);
            // A quorum queue's members are the nodes up when it is declared: the services wait for all three.
            Assert.All(nodes,
                n => Assert.Equal("service_healthy", Map(Map(services[name], "depends_on"), n)["condition"]));
        }

        Assert.Equal(3, firstNodes.Count);

        var (exit, _, stderr) = await ComposeAsync(Secrets, Cluster, "config", "-q");
        Assert.True(exit != 0, "RABBITMQ_ERLANG_COOKIE missing, yet config succeeded");
        Assert.Contains("set RABBITMQ_ERLANG_COOKIE in .env", stderr);
        Assert.Matches(new Regex("^RABBITMQ_ERLANG_COOKIE=", RegexOptions.Multiline),
            File.ReadAllText(Path.Combine(Root, ".env.example")));
    }

    static readonly string[] Cluster = ["docker-compose.cluster.yml"];

    static async Task<Dictionary<string, Dictionary<object, object>>> RenderedServicesAsync(
        IReadOnlyDictionary<string, string>? secrets = null, string[]? overrides = null)
    {
        var (exit, stdout, stderr) = await ComposeAsync(secrets ?? Secrets, overrides ?? [], "config");
        Assert.True(exit == 0, stderr);
        var document = new DeserializerBuilder().Build().Deserialize<Dictionary<object, object>>(stdout);
        return Map(document, "services").ToDictionary(s => (string)s.Key, s => (Dictionary<object, object>)s.Value);
    }

    static Dictionary<object, object> Map(Dictionary<object, object> parent, string key)
        => parent.TryGetValue(key, out var value) && value is Dictionary<object, object> map
            ? map
            : throw new Xunit.Sdk.XunitException($"'{key}' is missing or not a mapping");

    static string Text(Dictionary<object, object> parent, string key) => (string)parent[key];

    /// <summary>An empty env file, so an operator's own .env in the repository root cannot change what is
    /// tested.</summary>
    static readonly string NoEnvFile = CreateEmptyFile();

    static string CreateEmptyFile()
    {
        var path = Path.GetTempFileName();
        File.WriteAllText(path, "");
        return path;
    }

    /// <summary>Runs docker-compose in the repository root with exactly the given variables (no .env, no inherited
    /// ones).</summary>
    static Task<(int Exit, string Stdout, string Stderr)> ComposeAsync(IReadOnlyDictionary<string, string> variables,
        params string[] args)
        => ComposeAsync(variables, [], args);

    /// <summary>The same on docker-compose.yml and the given override files (e.g. docker-compose.cluster.yml), in
    /// order.</summary>
    static async Task<(int Exit, string Stdout, string Stderr)> ComposeAsync(
        IReadOnlyDictionary<string, string> variables, string[] overrides, params string[] args)
    {
        var files =
            new[] { "docker-compose.yml" }.Concat(overrides).SelectMany(f => new[] { "-f", Path.Combine(Root, f) });
        var info = new ProcessStartInfo("docker-compose", [.. files, "--env-file", NoEnvFile, .. args])
        {
            WorkingDirectory = Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.Environment.Clear();
        info.Environment["PATH"] = Environment.GetEnvironmentVariable("PATH");
        info.Environment["HOME"] = Path.GetTempPath();
        foreach (var (key, value) in variables)
        {
            info.Environment[key] = value;
        }

        Process process;
        try
        {
            process = Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("docker-compose is not installed: apt-get install -y "
                + "--no-install-recommends docker-compose (scripts/test.sh does)", e);
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await process.WaitForExitAsync(deadline.Token);
            return (process.ExitCode, await stdout, await stderr);
        }
    }
}
