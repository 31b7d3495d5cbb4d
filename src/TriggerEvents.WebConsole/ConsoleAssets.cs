using System.Collections.Frozen;
using Microsoft.AspNetCore.Http;

namespace TriggerEvents.WebConsole;

/// <summary>The console's pages, script and stylesheet, embedded in the binary (Assets/).</summary>
internal static class ConsoleAssets
{
    private static readonly FrozenDictionary<string, byte[]> Files = Load();

    public static async Task WriteAsync(HttpContext context, string name)
    {
        if (!Files.TryGetValue(name, out var content))
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }

        context.Response.ContentType = Path.GetExtension(name) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            _ => "application/octet-stream",
        };
        // Pages and script change only with the binary; no-cache keeps an upgraded console from
        // running yesterday's script against today's API.
        context.Response.Headers.CacheControl = "no-cache";
        await context.Response.Body.WriteAsync(content, context.RequestAborted);
    }

    private static FrozenDictionary<string, byte[]> Load()
    {
        var assembly = typeof(ConsoleAssets).Assembly;
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var resource in assembly.GetManifestResourceNames())
        {
            if (!resource.StartsWith("console/", StringComparison.Ordinal))
            {
                continue;
            }

            using var stream = assembly.GetManifestResourceStream(resource)!;
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            files[resource["console/".Length..]] = copy.ToArray();
        }

        return files.ToFrozenDictionary(StringComparer.Ordinal);
    }
}
