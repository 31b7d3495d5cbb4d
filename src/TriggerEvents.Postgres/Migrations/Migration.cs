namespace TriggerEvents.Postgres.Migrations;

/// <summary>One versioned SQL file from <c>sql/</c>, carried inside the binary.</summary>
internal sealed record Migration(int Version, string Name, string Sql);
