namespace TriggerEvents.Testing;

/// <summary>
/// Where tests leave what a person looks at after a run (the console's screenshots): the
/// directory <c>TRIGGER_EVENTS_TEST_ARTIFACTS</c> names (relative to the repository root unless
/// absolute), else <c>artifacts/test-results</c> in the repository. A stable place outside
/// bin/, whatever configuration the tests were built in; scripts/test.sh prints it.
/// </summary>
public static class TestArtifacts
{
    public const string EnvironmentVariable = "TRIGGER_EVENTS_TEST_ARTIFACTS";

    /// <summary>The artifacts' root directory (not created).</summary>
    public static string Root =>
        Path.GetFullPath(
            Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } given ? given : Path.Combine("artifacts", "test-results"),
            WorkerProcess.RepositoryRoot);

    /// <summary>The subdirectory <paramref name="name"/> of <see cref="Root"/>, created empty: it holds the latest run's files only.</summary>
    public static string EmptyDirectory(string name)
    {
        var directory = Path.Combine(Root, name);
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }

        return Directory.CreateDirectory(directory).FullName;
    }
}
