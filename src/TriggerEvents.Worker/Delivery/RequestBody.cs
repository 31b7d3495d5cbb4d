using System.Buffers;
using System.Net;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The body of one request, written once at its exact size. A small one is one pooled
/// array, given back when the request ends. A large one is in chunks of <see cref="BodyMemory"/>,
/// given back as soon as it has been written to the connection, so that requests waiting for
/// their answers hold no body.
/// </summary>
internal sealed class RequestBody : IDisposable
{
    private readonly BodyMemory.Reservation? reservation;
    private byte[]? array;
    private int released;

    private RequestBody(int length, byte[]? array, BodyMemory.Reservation? reservation)
    {
        Length = length;
        this.array = array;
        this.reservation = reservation;
    }

    /// <summary>Its length in bytes.</summary>
    public int Length { get; }

    /// <summary>In chunks, let go once written to the connection, rather than when the request ends.</summary>
    public bool ReleasedOnceSent => reservation is not null;

    /// <summary>A small body's bytes (it is one array).</summary>
    public Span<byte> Span => (array ?? throw new InvalidOperationException("A body in chunks is not one span.")).AsSpan(0, Length);

    /// <summary>The bytes, in one piece or in chunks; <see cref="IOException"/> once let go.</summary>
    public ReadOnlySequence<byte> Sequence => Volatile.Read(ref released) != 0
        ? throw new IOException("the request body was let go after it was sent once")
        : array is not null ? new ReadOnlySequence<byte>(array, 0, Length) : Slice(0, Length);

    /// <summary>A small body in a pooled array.</summary>
    public static RequestBody Rent(int length) => new(length, ArrayPool<byte>.Shared.Rent(length), reservation: null);

    /// <summary>A large body in the chunks of <paramref name="reservation"/>, sized here to <paramref name="length"/>.</summary>
    public static RequestBody InChunks(int length, BodyMemory.Reservation reservation)
    {
        reservation.Size(length);
        return new RequestBody(length, array: null, reservation);
    }

    /// <summary>Copies <paramref name="bytes"/> to <paramref name="offset"/> of a body in chunks.</summary>
    public void Write(int offset, ReadOnlySpan<byte> bytes)
    {
        foreach (var piece in Pieces(offset, bytes.Length))
        {
            bytes[..piece.Length].CopyTo(piece.Span);
            bytes = bytes[piece.Length..];
        }
    }

    /// <summary>The pieces of memory that hold bytes <paramref name="offset"/> to <paramref name="offset"/> + <paramref name="length"/> of a body in chunks.</summary>
    public List<Memory<byte>> Pieces(int offset, int length)
    {
        var chunks = reservation!.Chunks;
        var pieces = new List<Memory<byte>>((length / BodyMemory.ChunkSize) + 2);
        while (length > 0)
        {
            var within = offset % BodyMemory.ChunkSize;
            var take = Math.Min(length, BodyMemory.ChunkSize - within);
            pieces.Add(chunks[offset / BodyMemory.ChunkSize].AsMemory(within, take));
            offset += take;
            length -= take;
        }

        return pieces;
    }

    /// <summary>Bytes <paramref name="offset"/> to <paramref name="offset"/> + <paramref name="length"/> as one sequence (chunks linked, not copied).</summary>
    public ReadOnlySequence<byte> Slice(int offset, int length)
    {
        if (array is not null)
        {
            return new ReadOnlySequence<byte>(array, offset, length);
        }

        Chunk? first = null, last = null;
        foreach (var piece in Pieces(offset, length))
        {
            last = last is null ? first = new Chunk(piece, 0) : last.Append(piece);
        }

        return first is null ? ReadOnlySequence<byte>.Empty : new ReadOnlySequence<byte>(first, 0, last!, last!.Memory.Length);
    }

    /// <summary>Lets the bytes go; later calls do nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref released, 1) != 0)
        {
            return;
        }

        if (Interlocked.Exchange(ref array, null) is { } pooled)
        {
            ArrayPool<byte>.Shared.Return(pooled);
        }

        reservation?.Dispose();
    }

    private sealed class Chunk : ReadOnlySequenceSegment<byte>
    {
        public Chunk(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Chunk Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Chunk(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    /// <summary>The request content over a <see cref="RequestBody"/>.</summary>
    internal sealed class Content(RequestBody body) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            SerializeToStreamAsync(stream, context, CancellationToken.None);

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
        {
            // A body in chunks is gone after one write, like a stream's content: a request the
            // handler tries to send again on a new connection fails as a connection error
            // (Sequence throws an IOException), and the delivery is retried.
            foreach (var piece in body.Sequence)
            {
                await stream.WriteAsync(piece, cancellationToken);
            }

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
