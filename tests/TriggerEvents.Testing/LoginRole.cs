using Npgsql;

namespace TriggerEvents.Testing;

/// <summary>
/// A login role of its own, created with no grant at all (not a superuser, no right on the
/// trigger_events schema), so that a test runs as the roles users really run as; dropped, with
/// what it owns, after the test.
/// </summary>
public sealed class LoginRole : IAsyncDisposable
{
    private readonly TestDatabase database;

    private LoginRole(TestDatabase database, string name, string connectionString)
    {
        this.database = database;
        Name = name;
        ConnectionString = connectionString;
    }

    public string Name { get; }

    /// <summary>The test database's connection string, logging in as this role.</summary>
    public string ConnectionString { get; }

    public static async Task<LoginRole> CreateAsync(TestDatabase database)
    {
        var name = $"te_role_{Guid.NewGuid():N}"[..20];
        var password = Guid.NewGuid().ToString("N");
        await database.ExecuteAsync($"CREATE ROLE {name} LOGIN PASSWORD '{password}'");
        var connectionString = new NpgsqlConnectionStringBuilder(database.ConnectionString) { Username = name, Password = password }.ConnectionString;
        return new LoginRole(database, name, connectionString);
    }

    /// <summary>Opens a connection that logs in as this role (no pooling: the role is dropped after the test).</summary>
    public async Task<NpgsqlConnection> OpenAsync()
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await database.ExecuteAsync($"DROP OWNED BY {Name}");
        await database.ExecuteAsync($"DROP ROLE {Name}");
    }
}
