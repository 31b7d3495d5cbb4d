using System.Buffers;
using System.Net;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The body of one request, written once at its exact size: a small one in a pooled array,
/// given back when the request ends; a large one in an array of its own, held under a
/// <see cref="BodyMemory"/> reservation and let go as soon as it has been written to the
/// connection, so that requests waiting for their answers hold no body (issue 12).
/// </summary>
internal sealed class RequestBody : IDisposable
{
    private readonly bool pooled;
    private readonly BodyMemory.Reservation? reservation;
    private byte[]? buffer;

    private RequestBody(byte[] buffer, int length, bool pooled, BodyMemory.Reservation? reservation)
    {
        this.buffer = buffer;
        Length = length;
        this.pooled = pooled;
        this.reservation = reservation;
    }

    /// <summary>Its length in bytes.</summary>
    public int Length { get; }

    /// <summary>Let go once written to the connection (a large body), rather than when the request ends.</summary>
    public bool ReleasedOnceSent => reservation is not null;

    /// <summary>The bytes; <see cref="ObjectDisposedException"/> once released.</summary>
    public Memory<byte> Memory => (buffer ?? throw new ObjectDisposedException(nameof(RequestBody), "The body was let go once it had been sent.")).AsMemory(0, Length);

    /// <summary>A small body in a pooled array.</summary>
    public static RequestBody Rent(int length) => new(ArrayPool<byte>.Shared.Rent(length), length, pooled: true, reservation: null);

    /// <summary>A large body, held under <paramref name="reservation"/> until it is released.</summary>
    public static RequestBody Allocate(int length, BodyMemory.Reservation reservation) =>
        new(GC.AllocateUninitializedArray<byte>(length), length, pooled: false, reservation);

    /// <summary>Lets the bytes go; later calls do nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref buffer, null) is not { } released)
        {
            return;
        }

        if (pooled)
        {
            ArrayPool<byte>.Shared.Return(released);
        }

        reservation?.Dispose();
    }

    /// <summary>The request content over a <see cref="RequestBody"/>.</summary>
    internal sealed class Content(RequestBody body) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            // A large body is gone after one write, like a stream's content: a request the
            // handler tries to send again on a new connection fails as a connection error, and
            // the delivery is retried.
            if (Volatile.Read(ref body.buffer) is null)
            {
                throw new IOException("the request body was let go after it was sent once");
            }

            await stream.WriteAsync(body.Memory, cancellationToken);
            if (body.ReleasedOnceSent)
            {
                body.Dispose();
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = body.Length;
            return true;
        }
    }
}
