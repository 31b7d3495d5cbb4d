using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// Which addresses <c>worker.deny_private_networks</c> refuses: everything that is not a
/// public unicast address, so that a subscription cannot make the worker call a service inside its
/// own network, the host itself or a cloud metadata endpoint.
/// </summary>
/// <remarks>
/// IPv4: 0.0.0.0/8 ("this network"; 0.0.0.0 reaches the host itself), 10/8, 172.16/12, 192.168/16
/// (RFC 1918), 100.64/10 (carrier-grade NAT, RFC 6598; Alibaba's metadata endpoint is in it),
/// 127/8, 169.254/16 (link-local; 169.254.169.254 is the AWS, Azure and GCP metadata endpoint),
/// 192.0.0/24 (IETF protocol assignments), 198.18/15 (benchmarking), 224/4 (multicast) and
/// 240/4 (reserved, and the broadcast address). IPv6: ::/128, ::1, fc00::/7 (unique local; AWS's
/// IPv6 metadata endpoint fd00:ec2::254 is in it), fe80::/10 (link-local), fec0::/10 (the old
/// site-local) and ff00::/8 (multicast). An IPv6 address that carries an IPv4 one (::ffff:0:0/96
/// mapped, ::/96 compatible, 64:ff9b::/96 NAT64, 2002::/16 6to4) is judged by the IPv4 address,
/// so that no spelling of 127.0.0.1 gets through.
/// </remarks>
internal static class PrivateAddress
{
    /// <summary>
    /// What kind of non-public address <paramref name="address"/> is (<c>loopback</c>,
    /// <c>private</c>, <c>link-local</c>, <c>shared</c>, <c>unspecified</c>, <c>multicast</c>,
    /// <c>reserved</c>), or null for a public one.
    /// </summary>
    public static string? Classify(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return address.AddressFamily switch
        {
            AddressFamily.InterNetwork => ClassifyV4(ToUInt32(address)),
            AddressFamily.InterNetworkV6 => ClassifyV6(address),
            _ => "reserved",
        };
    }

    /// <summary>True when <see cref="Classify"/> finds <paramref name="address"/> is not public.</summary>
    public static bool IsPrivate(IPAddress address) => Classify(address) is not null;

    private static uint ToUInt32(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[4];
        address.TryWriteBytes(bytes, out _);
        return BinaryPrimitives.ReadUInt32BigEndian(bytes);
    }

    private static string? ClassifyV4(uint a) => a switch
    {
        _ when In(a, 0x00000000, 8) => a == 0 ? "unspecified" : "reserved",
        _ when In(a, 0x7F000000, 8) => "loopback",
        _ when In(a, 0x0A000000, 8) || In(a, 0xAC100000, 12) || In(a, 0xC0A80000, 16) => "private",
        _ when In(a, 0xA9FE0000, 16) => "link-local",
        _ when In(a, 0x64400000, 10) => "shared",
        _ when In(a, 0xE0000000, 4) => "multicast",
        _ when In(a, 0xC0000000, 24) || In(a, 0xC6120000, 15) || In(a, 0xF0000000, 4) => "reserved",
        _ => null,
    };

    private static bool In(uint address, uint network, int prefix) => (address >> (32 - prefix)) == (network >> (32 - prefix));

    private static string? ClassifyV6(IPAddress address)
    {
        Span<byte> b = stackalloc byte[16];
        address.TryWriteBytes(b, out _);
        var high = BinaryPrimitives.ReadUInt64BigEndian(b);
        var low = BinaryPrimitives.ReadUInt64BigEndian(b[8..]);
        var embedded = BinaryPrimitives.ReadUInt32BigEndian(b[12..]);

        if (high == 0 && low == 0)
        {
            return "unspecified";
        }

        if (high == 0 && low == 1)
        {
            return "loopback";
        }

        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated): the IPv4 address it is.
        if (high == 0 && (low >> 32 is 0xFFFF or 0))
        {
            return ClassifyV4(embedded);
        }

        // 64:ff9b::a.b.c.d, the NAT64 well-known prefix, reaches a.b.c.d through the translator.
        if (high == 0x0064_FF9B_0000_0000 && low >> 32 == 0)
        {
            return ClassifyV4(embedded);
        }

        // 2002:AABB:CCDD::/48, 6to4, tunnels to the IPv4 address AA.BB.CC.DD.
        if (b[0] == 0x20 && b[1] == 0x02)
        {
            return ClassifyV4(BinaryPrimitives.ReadUInt32BigEndian(b[2..]));
        }

        return b[0] switch
        {
            0xFF => "multicast",
            0xFC or 0xFD => "private",
            0xFE when (b[1] & 0xC0) == 0x80 => "link-local",
            0xFE when (b[1] & 0xC0) == 0xC0 => "private",
            _ => null,
        };
    }
}
