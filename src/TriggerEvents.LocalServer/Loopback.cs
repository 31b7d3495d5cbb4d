using System.Net;
using System.Net.Sockets;

namespace TriggerEvents.LocalServer;

/// <summary>Ports on 127.0.0.1 for throwaway servers: clusters, receivers, worker endpoints.</summary>
internal static class Loopback
{
    /// <summary>A port that was free a moment ago (the OS picks it; it is released before use).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
