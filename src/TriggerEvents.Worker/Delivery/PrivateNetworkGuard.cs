using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// <c>worker.deny_private_networks</c>: the connect step of a webhook's connection
/// handler, which resolves the host itself and connects only to public addresses.
/// </summary>
/// <remarks>
/// The check is on the addresses the socket is given, after DNS, in the same step that connects:
/// a name that resolves to a public address when a URL is checked and to 169.254.169.254 a moment
/// later (DNS rebinding) is judged by what it resolves to when the connection is made. Every
/// connection goes through it, so a redirect would be checked too (none is followed).
/// </remarks>
internal static class PrivateNetworkGuard
{
    /// <summary>A <see cref="SocketsHttpHandler.ConnectCallback"/> that refuses non-public addresses.</summary>
    public static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var host = context.DnsEndPoint.Host;
        var addresses = IPAddress.TryParse(host.AsSpan().Trim("[]"), out var literal)
            ? [literal]
            : await Dns.GetHostAddressesAsync(host, cancellationToken);
        var allowed = Array.FindAll(addresses, a => !PrivateAddress.IsPrivate(a));
        if (allowed.Length == 0)
        {
            if (addresses.Length == 0)
            {
                throw new SocketException((int)SocketError.HostNotFound);
            }

            throw new PrivateDestinationException(host, addresses[0]);
        }

        // As SocketsHttpHandler connects by default: dual mode, so IPv4 and IPv6 both work.
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The refusal inside <paramref name="exception"/>, if that is why the request failed.</summary>
    public static PrivateDestinationException? RefusalIn(Exception exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is PrivateDestinationException refused)
            {
                return refused;
            }
        }

        return null;
    }
}

/// <summary>A connection the worker refused to make: the destination is not a public address.</summary>
internal sealed class PrivateDestinationException(string host, IPAddress address)
    : IOException(Describe(host, address))
{
    private static string Describe(string host, IPAddress address)
    {
        var shown = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        var destination = IPAddress.TryParse(host.AsSpan().Trim("[]"), out _) ? shown.ToString() : $"{host} ({shown})";
        return $"destination {destination} is a private address and worker.deny_private_networks is on";
    }
}
