namespace DynamicWorkers.UnitTests;

/// <summary>The checked-out repository the tests run from (tests that read its files: docs, configuration).</summary>
public static class RepositoryFiles
{
    public static string Root { get; } = FindRoot();

    static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory =
            directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "DynamicWorkers.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("DynamicWorkers.sln not found above " + AppContext.BaseDirectory);
    }
}
