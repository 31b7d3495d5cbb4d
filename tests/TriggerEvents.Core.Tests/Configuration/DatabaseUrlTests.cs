using System.Data.Common;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

public class DatabaseUrlTests
{
    /// <summary>The settings of a connection string, read back the way Npgsql's builder (a DbConnectionStringBuilder) reads them.</summary>
    private static Dictionary<string, string> Settings(string connectionString)
    {
        var builder = new DbConnectionStringBuilder { ConnectionString = connectionString };
        return builder.Keys.Cast<string>().ToDictionary(key => key, key => (string)builder[key], StringComparer.OrdinalIgnoreCase);
    }

    [Test]
    public void A_full_uri_becomes_npgsql_keywords_in_a_readable_order()
    {
        var connectionString = DatabaseUrl.ToConnectionString("postgres://app:s3cret@db.example.com:5433/orders?sslmode=require&application_name=triggerevents&connect_timeout=10");

        Assert.That(connectionString, Is.EqualTo("Host=db.example.com;Port=5433;Database=orders;Username=app;Password=s3cret;SSL Mode=Require;Application Name=triggerevents;Timeout=10"));
    }

    [TestCase("postgresql://app@db/orders")]
    [TestCase("POSTGRES://app@db/orders")]
    [TestCase("  postgres://app@db/orders\n")]
    public void Both_schemes_are_accepted_in_any_case(string url)
    {
        Assert.That(DatabaseUrl.ToConnectionString(url), Is.EqualTo("Host=db;Database=orders;Username=app"));
    }

    [Test]
    public void User_and_password_are_percent_decoded_and_quoted_for_the_connection_string()
    {
        var settings = Settings(DatabaseUrl.ToConnectionString("postgres://us%40er:p%40ss%3Bw%3Dord%22%27%20x@host/db"));

        Assert.That(settings["Username"], Is.EqualTo("us@er"));
        Assert.That(settings["Password"], Is.EqualTo("p@ss;w=ord\"' x"));
        Assert.That(settings["Host"], Is.EqualTo("host"));
    }

    [Test]
    public void A_plus_in_a_password_stays_a_plus()
    {
        Assert.That(Settings(DatabaseUrl.ToConnectionString("postgres://u:a+b@host/db"))["Password"], Is.EqualTo("a+b"));
    }

    [Test]
    public void An_unencoded_at_sign_in_the_password_still_parses()
    {
        Assert.That(Settings(DatabaseUrl.ToConnectionString("postgres://u:p@ss@host/db"))["Password"], Is.EqualTo("p@ss"));
    }

    [Test]
    public void Only_a_host_is_needed()
    {
        Assert.That(DatabaseUrl.ToConnectionString("postgres://localhost"), Is.EqualTo("Host=localhost"));
    }

    [Test]
    public void An_ipv6_host_is_written_without_brackets()
    {
        Assert.That(DatabaseUrl.ToConnectionString("postgres://u@[::1]:5432/db"), Is.EqualTo("Host=::1;Port=5432;Database=db;Username=u"));
    }

    [Test]
    public void Several_hosts_each_keep_their_port()
    {
        Assert.That(
            DatabaseUrl.ToConnectionString("postgres://u@h1:5432,h2:5433,h3/db?target_session_attrs=read-write"),
            Is.EqualTo("Host=h1:5432,h2:5433,h3;Database=db;Username=u;Target Session Attributes=read-write"));
    }

    [Test]
    public void A_unix_socket_directory_may_be_the_encoded_host_or_a_parameter()
    {
        Assert.That(Settings(DatabaseUrl.ToConnectionString("postgres://u@%2Fvar%2Frun%2Fpostgresql/db"))["Host"], Is.EqualTo("/var/run/postgresql"));
        Assert.That(DatabaseUrl.ToConnectionString("postgres:///db?host=/tmp"), Is.EqualTo("Database=db;Host=/tmp"));
    }

    [Test]
    public void Query_parameters_override_the_parts_before_them()
    {
        var settings = Settings(DatabaseUrl.ToConnectionString("postgres://u:p@h:5432/db?user=other&port=6432&dbname=elsewhere"));

        Assert.That(settings["Username"], Is.EqualTo("other"));
        Assert.That(settings["Port"], Is.EqualTo("6432"));
        Assert.That(settings["Database"], Is.EqualTo("elsewhere"));
        Assert.That(settings, Has.Count.EqualTo(5));
    }

    [TestCase("disable", "Disable")]
    [TestCase("allow", "Allow")]
    [TestCase("prefer", "Prefer")]
    [TestCase("require", "Require")]
    [TestCase("verify-ca", "VerifyCA")]
    [TestCase("verify-full", "VerifyFull")]
    [TestCase("VERIFY-FULL", "VerifyFull")]
    public void Sslmode_takes_the_libpq_spellings(string sslmode, string expected)
    {
        Assert.That(Settings(DatabaseUrl.ToConnectionString($"postgres://h/db?sslmode={sslmode}"))["SSL Mode"], Is.EqualTo(expected));
    }

    [Test]
    public void Certificate_and_other_libpq_parameters_are_mapped()
    {
        var settings = Settings(DatabaseUrl.ToConnectionString(
            "postgres://h/db?sslrootcert=/certs/ca.pem&sslcert=/certs/c.pem&sslkey=/certs/c.key&sslpassword=kp&options=-c%20statement_timeout%3D5s&channel_binding=require&gssencmode=disable"));

        Assert.Multiple(() =>
        {
            Assert.That(settings["Root Certificate"], Is.EqualTo("/certs/ca.pem"));
            Assert.That(settings["SSL Certificate"], Is.EqualTo("/certs/c.pem"));
            Assert.That(settings["SSL Key"], Is.EqualTo("/certs/c.key"));
            Assert.That(settings["SSL Password"], Is.EqualTo("kp"));
            Assert.That(settings["Options"], Is.EqualTo("-c statement_timeout=5s"));
            Assert.That(settings["Channel Binding"], Is.EqualTo("Require"));
            Assert.That(settings["GSS Encryption Mode"], Is.EqualTo("Disable"));
        });
    }

    [TestCase("Host=localhost;Database=orders;Username=app;Password=secret")]
    [TestCase("host=db; port=5432")]
    [TestCase("Server=db;Password=\"a;b\"")]
    public void An_npgsql_connection_string_is_returned_as_it_is(string connectionString)
    {
        Assert.That(DatabaseUrl.ToConnectionString(connectionString), Is.SameAs(connectionString));
    }

    [TestCase("", "is empty")]
    [TestCase("   ", "is empty")]
    [TestCase("mysql://u:hunter2@h/db", "has the scheme 'mysql'")]
    [TestCase("localhost", "is neither a postgres:// URI nor an Npgsql connection string")]
    [TestCase("postgres://u:hunter2@h:abc/db", "its port is not a number from 1 to 65535")]
    [TestCase("postgres://u:hunter2@h:0/db", "its port is not a number from 1 to 65535")]
    [TestCase("postgres://u:hunter2@h:65536/db", "its port is not a number from 1 to 65535")]
    [TestCase("postgres://u:hunter2@/db", "it names no host")]
    [TestCase("postgres://u:hunter2@h1,,h2/db", "one of its hosts is empty")]
    [TestCase("postgres://u:hunter2@[::1/db", "an IPv6 host has no closing ']'")]
    [TestCase("postgres://u:hunter2@[::1]x/db", "an IPv6 host is followed by something other than ':port'")]
    [TestCase("postgres://u:hun%zzter2@h/db", "its password has a '%' that is not followed by two hex digits")]
    [TestCase("postgres://u:hunter2#@h/db", "it has a '#'")]
    [TestCase("postgres://u:hunter2@h/db?pool_max_conns=5", "'pool_max_conns' is not supported")]
    [TestCase("postgres://u:hunter2@h/db?sslmode=on", "sslmode must be one of disable, allow, prefer, require, verify-ca, verify-full")]
    [TestCase("postgres://u:hunter2@h/db?connect_timeout=soon", "connect_timeout must be a whole number of seconds")]
    [TestCase("postgres://u:hunter2@h/db?port=x", "its port is not a number from 1 to 65535")]
    [TestCase("postgres://u:hunter2@h/db?sslmode", "a query parameter has no name=value form")]
    public void A_bad_url_is_an_error_naming_the_problem_without_the_password(string url, string problem)
    {
        var exception = Assert.Throws<ArgumentException>(() => DatabaseUrl.ToConnectionString(url))!;

        Assert.That(exception.Message, Does.Contain(problem));
        Assert.That(exception.Message, Does.Not.Contain("hunter2").And.Not.Contain("hun"));
    }

    [Test]
    public void A_mangled_url_does_not_quote_what_might_be_part_of_the_password()
    {
        // An unencoded '?' in a password makes the rest of it look like a query; only names that
        // look like parameter names are quoted back.
        var exception = Assert.Throws<ArgumentException>(() => DatabaseUrl.ToConnectionString("postgres://h/db?ss%40word!=x"))!;

        Assert.That(exception.Message, Does.Contain("a query parameter is not supported").And.Not.Contain("ss@word"));
    }

    [Test]
    public void A_password_mistaken_for_a_port_is_not_quoted()
    {
        var exception = Assert.Throws<ArgumentException>(() => DatabaseUrl.ToConnectionString("postgres://u:pa?ss@word/db"))!;

        Assert.That(exception.Message, Does.Contain("port").And.Not.Contain("pa"));
    }
}
