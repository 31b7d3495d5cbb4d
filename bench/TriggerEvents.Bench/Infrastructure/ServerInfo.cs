namespace TriggerEvents.Bench.Infrastructure;

/// <summary>What a reader needs to judge the figures: server version, durability settings, cores.</summary>
internal sealed record ServerInfo(
    string Version,
    string Fsync,
    string SynchronousCommit,
    string FullPageWrites,
    string Autovacuum,
    string SharedBuffers,
    int Cores)
{
    public static async Task<ServerInfo> ReadAsync(BenchDatabase database, CancellationToken cancellationToken)
    {
        async Task<string> Show(string setting) => await database.ScalarAsync<string>($"SHOW {setting}", cancellationToken);

        return new ServerInfo(
            await database.ScalarAsync<string>("SELECT version()", cancellationToken),
            await Show("fsync"),
            await Show("synchronous_commit"),
            await Show("full_page_writes"),
            await Show("autovacuum"),
            await Show("shared_buffers"),
            Environment.ProcessorCount);
    }

    public void WriteTo(TextWriter output)
    {
        output.WriteLine($"PostgreSQL: {Version}");
        output.WriteLine($"Settings:   fsync={Fsync}, synchronous_commit={SynchronousCommit}, full_page_writes={FullPageWrites}, autovacuum={Autovacuum}, shared_buffers={SharedBuffers}");
        output.WriteLine($"Cores:      {Cores} (server, pgbench and this process share them)");
    }
}
