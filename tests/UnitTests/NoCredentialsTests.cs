using System.Text.RegularExpressions;

namespace DynamicWorkers.UnitTests;

/// <summary>
/// Operational security: the repository's configuration, deployment files and scripts hold no credentials. The only
/// passwords in it are RabbitMQ's built-in <c>guest</c> (which the broker accepts on loopback only) and the test logins
/// <c>dw</c>/<c>dw</c> that <c>scripts/test.sh</c> creates on the loopback servers; anything else must come from the
/// environment (<c>Section__Key</c>, <c>${VAR}</c> in compose) or user secrets.
/// </summary>
public sealed partial class NoCredentialsTests
{
    static readonly HashSet<string> AllowedPasswords = ["guest", "dw"];

    [Fact]
    public void No_configuration_deployment_file_or_script_holds_a_password_key_or_secret()
    {
        var root = RepositoryFiles.Root;
        var findings = new List<string>();
        foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Where(IsScanned)
            .Where(f => Path.GetFileName(f) != "NoCredentialsTests.cs"))
        {
            var text = File.ReadAllText(file);
            var where = Path.GetRelativePath(root, file);
            foreach (Match m in PasswordValue().Matches(text))
            {
                var value = m.Groups["value"].Value.TrimStart('N').Trim('"', '\''); // N'...': a T-SQL Unicode literal
                if (value.Any(char.IsLetterOrDigit) && !AllowedPasswords.Contains(value) && !IsReference(value))
                {
                    findings.Add($"{where}: password '{value}'");
                }
            }

            if (SecretMaterial().IsMatch(text))
            {
                findings.Add($"{where}: key material ({SecretMaterial().Match(text).Value})");
            }
        }

        Assert.True(findings.Count == 0,
            "credentials in the repository (take them from the environment or user secrets):\n" + string.Join("\n",
            findings));
    }

    [Theory]
    [InlineData("\"Password\": \"hunter2\"")]
    [InlineData("Host=db;Username=sa;Password=S3cret!;")]
    [InlineData("RABBITMQ_DEFAULT_PASS: hunter2")]
    [InlineData("CREATE ROLE app LOGIN PASSWORD 'hunter2'")]
    public void The_scan_catches_a_real_password(string line)
    {
        var m = PasswordValue().Match(line);
        Assert.True(m.Success && !AllowedPasswords.Contains(m.Groups["value"].Value.Trim('"', '\'')));
    }

    /// <summary>A placeholder (<c>change-me…</c>) or a value taken from elsewhere: <c>${VAR}</c>, <c>$VAR</c>,
    /// <c>%VAR%</c>, a <c>&lt;placeholder&gt;</c>, or code (a variable or a call).</summary>
    static bool IsReference(string value)
        => value.Contains("change-me", StringComparison.OrdinalIgnoreCase) // a placeholder (.env.example)
           || value[0] is '$' or '%' or '<' or '{' || value.Contains('(') || value.Contains('.') && !value.Contains(' ')
               && char.IsUpper(value[0]) && value.All(c => char.IsLetterOrDigit(c) || c == '.');

    static bool IsScanned(string path)
    {
        var parts = path.Split(Path.DirectorySeparatorChar);
        if (parts.Any(p => p is "bin" or "obj" or ".git" or "artifacts" or "node_modules" or "TestResults"))
        {
            return false;
        }

        // Where credentials would live: configuration, deployment files and scripts (code and documentation
        // name settings and test fixtures make up fake ones; those are not credentials).
        return Path.GetExtension(path) is ".json" or ".yml" or ".yaml" or ".sh" or ".env" or ".example" or ".config"
            or ".xml" or ".props" or ".sql" or ".ini" or ".conf"
               || Path.GetFileName(path).StartsWith("Dockerfile", StringComparison.Ordinal);
    }

    // "Password": "x" (JSON), Password=x; (connection strings), PASSWORD: x / _PASS=x (compose, env, shell), PASSWORD
    // 'x' (SQL).
    [GeneratedRegex(
        """(?i)(?:password|passwd|_pass|pwd)["']?\s*[:=](?![=>])\s*(?<value>"[^"\r\n]*"|N?'[^'\r\n]*'|[^\s;,"'\r\n]+)|PASSWORD\s+'(?<value>[^'\r\n]*)'""")]
    private static partial Regex PasswordValue();

    [GeneratedRegex(
        """-----BEGIN [A-Z ]*PRIVATE KEY-----|AccountKey=[A-Za-z0-9+/=]{20,}|SharedAccessKey=[A-Za-z0-9+/=]{20,}|(?:AKIA|ASIA)[A-Z0-9]{16}""")]
    private static partial Regex SecretMaterial();
}
