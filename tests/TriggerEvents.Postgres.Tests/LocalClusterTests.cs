using System.Diagnostics;
using TriggerEvents.LocalServer;

namespace TriggerEvents.Postgres.Tests;

/// <summary>Clean-up of the throwaway clusters that killed processes leave behind.</summary>
[Platform("Linux")]
public sealed class LocalClusterTests
{
    private string root = null!;

    [SetUp]
    public void CreateRoot()
    {
        root = Path.Combine(Path.GetTempPath(), $"local-cluster-tests-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);
    }

    [TearDown]
    public void DeleteRoot() => Directory.Delete(root, recursive: true);

    [Test]
    public void A_cluster_directory_whose_owner_and_server_are_gone_is_deleted_and_the_others_are_kept()
    {
        var exited = ExitedProcessId();
        var abandoned = ClusterDirectory(exited, serverId: null);
        var serverStopped = ClusterDirectory(exited, serverId: exited);
        var ownerRunning = ClusterDirectory(Environment.ProcessId, serverId: null);
        var serverRunning = ClusterDirectory(exited, serverId: Environment.ProcessId);
        var notACluster = Directory.CreateDirectory(Path.Combine(root, $"other-{exited}")).FullName;

        LocalCluster.RemoveAbandoned(root);

        Assert.Multiple(() =>
        {
            Assert.That(Directory.Exists(abandoned), Is.False, "owner gone, no server");
            Assert.That(Directory.Exists(serverStopped), Is.False, "owner gone, server gone");
            Assert.That(Directory.Exists(ownerRunning), Is.True, "owner running");
            Assert.That(Directory.Exists(serverRunning), Is.True, "owner gone, server running");
            Assert.That(Directory.Exists(notACluster), Is.True, "not a cluster directory");
        });
    }

    /// <summary>A directory as <see cref="LocalCluster.StartAsync"/> makes it, with a postmaster.pid when a server id is given.</summary>
    private string ClusterDirectory(int ownerId, int? serverId)
    {
        var directory = Path.Combine(root, $"{LocalCluster.DirectoryPrefix}{ownerId}-{Guid.NewGuid():N}");
        var data = Directory.CreateDirectory(Path.Combine(directory, "data")).FullName;
        File.WriteAllText(Path.Combine(directory, "server.log"), "log");
        if (serverId is { } id)
        {
            File.WriteAllText(Path.Combine(data, "postmaster.pid"), $"{id}\n{data}\n");
        }

        return directory;
    }

    /// <summary>The id of a process that has just exited.</summary>
    private static int ExitedProcessId()
    {
        using var process = Process.Start("true")!;
        process.WaitForExit();
        return process.Id;
    }
}
