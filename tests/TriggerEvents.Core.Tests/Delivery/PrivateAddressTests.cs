using System.Net;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

/// <summary>What <c>worker.deny_private_networks</c> refuses. Nothing here touches the network.</summary>
public class PrivateAddressTests
{
    [TestCase("127.0.0.1", "loopback")]
    [TestCase("127.255.255.254", "loopback")]
    [TestCase("10.0.0.1", "private")]
    [TestCase("10.255.255.255", "private")]
    [TestCase("172.16.0.1", "private")]
    [TestCase("172.31.255.255", "private")]
    [TestCase("192.168.1.1", "private")]
    [TestCase("169.254.169.254", "link-local")]
    [TestCase("169.254.0.1", "link-local")]
    [TestCase("100.64.0.1", "shared")]
    [TestCase("100.100.100.200", "shared")]
    [TestCase("100.127.255.255", "shared")]
    [TestCase("0.0.0.0", "unspecified")]
    [TestCase("0.1.2.3", "reserved")]
    [TestCase("224.0.0.1", "multicast")]
    [TestCase("239.255.255.250", "multicast")]
    [TestCase("240.0.0.1", "reserved")]
    [TestCase("255.255.255.255", "reserved")]
    [TestCase("192.0.0.170", "reserved")]
    [TestCase("198.18.0.1", "reserved")]
    [TestCase("::", "unspecified")]
    [TestCase("::1", "loopback")]
    [TestCase("fc00::1", "private")]
    [TestCase("fd00:ec2::254", "private")]
    [TestCase("fe80::1", "link-local")]
    [TestCase("febf:ffff::1", "link-local")]
    [TestCase("fec0::1", "private")]
    [TestCase("ff02::1", "multicast")]
    [TestCase("::ffff:127.0.0.1", "loopback")]
    [TestCase("::ffff:169.254.169.254", "link-local")]
    [TestCase("::ffff:10.1.2.3", "private")]
    [TestCase("::127.0.0.1", "loopback")]
    [TestCase("64:ff9b::a9fe:a9fe", "link-local")]
    [TestCase("2002:7f00:1::1", "loopback")]
    [TestCase("2002:c0a8:101::1", "private")]
    public void Addresses_that_are_not_public_are_private(string address, string kind)
    {
        Assert.That(PrivateAddress.Classify(IPAddress.Parse(address)), Is.EqualTo(kind));
        Assert.That(PrivateAddress.IsPrivate(IPAddress.Parse(address)), Is.True);
    }

    [TestCase("1.1.1.1")]
    [TestCase("8.8.8.8")]
    [TestCase("9.255.255.255")]
    [TestCase("11.0.0.0")]
    [TestCase("100.63.255.255")]
    [TestCase("100.128.0.0")]
    [TestCase("126.255.255.255")]
    [TestCase("128.0.0.1")]
    [TestCase("169.253.255.255")]
    [TestCase("169.255.0.0")]
    [TestCase("172.15.255.255")]
    [TestCase("172.32.0.0")]
    [TestCase("192.167.255.255")]
    [TestCase("192.169.0.0")]
    [TestCase("198.17.255.255")]
    [TestCase("198.20.0.0")]
    [TestCase("223.255.255.255")]
    [TestCase("2606:4700:4700::1111")]
    [TestCase("2001:db9::1")]
    [TestCase("fbff:ffff::1")]
    [TestCase("::ffff:8.8.8.8")]
    [TestCase("64:ff9b::808:808")]
    [TestCase("2002:808:808::1")]
    public void Public_addresses_are_not(string address)
    {
        Assert.That(PrivateAddress.Classify(IPAddress.Parse(address)), Is.Null);
    }

    [TestCase("2130706433", "loopback")]
    [TestCase("0x7f.1", "loopback")]
    [TestCase("127.1", "loopback")]
    [TestCase("0177.0.0.1", "loopback")]
    public void Every_spelling_of_an_address_is_judged_by_the_address(string spelling, string kind)
    {
        Assert.That(IPAddress.TryParse(spelling, out var address), Is.True);
        Assert.That(PrivateAddress.Classify(address!), Is.EqualTo(kind));
    }
}
