namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The memory for large request bodies of one worker (<c>worker.body_memory</c>): chunks of
/// <see cref="ChunkSize"/> bytes, made as they are first needed and kept for the next body,
/// never more than the budget. A large event waits here, before it is read from the database,
/// until its body fits (64 deliveries of 2 MB rows held far more than the manifest's
/// memory limit). Chunks rather than one array per body: arrays of each body's own size were
/// garbage once sent, and the garbage collector let 64 of them pile up before it ran (a peak of
/// 340 MiB where 64 MiB were live). Chunks are below the large object threshold and are reused.
/// Waiters are served in arrival order, so a large body is not passed over for ever.
/// </summary>
internal sealed class BodyMemory
{
    /// <summary>The size of one chunk: under the 85,000 bytes from which .NET puts arrays on the large object heap.</summary>
    public const int ChunkSize = 64 * 1024;

    private readonly Lock gate = new();
    private readonly LinkedList<Waiter> waiters = new();
    private readonly Stack<byte[]> free = new();
    private readonly int capacity;
    private int made;
    private int used;

    /// <summary>A budget of <paramref name="bytes"/>, in whole chunks.</summary>
    public BodyMemory(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, ChunkSize);
        capacity = (int)Math.Min(int.MaxValue, bytes / ChunkSize);
    }

    /// <summary>The budget in bytes.</summary>
    public long Capacity => (long)capacity * ChunkSize;

    /// <summary>Bytes reserved now.</summary>
    public long Used
    {
        get
        {
            lock (gate)
            {
                return (long)used * ChunkSize;
            }
        }
    }

    /// <summary>Bytes of chunks made so far (kept for the next body): at most <see cref="Capacity"/>.</summary>
    public long Made
    {
        get
        {
            lock (gate)
            {
                return (long)made * ChunkSize;
            }
        }
    }

    /// <summary>Bodies waiting for room now.</summary>
    public int Waiting
    {
        get
        {
            lock (gate)
            {
                return waiters.Count;
            }
        }
    }

    /// <summary>
    /// Waits until <paramref name="bytes"/> fit (at most the whole budget: configuration keeps
    /// every body within it) and reserves chunks for them until the reservation is disposed.
    /// </summary>
    public Task<Reservation> ReserveAsync(long bytes, CancellationToken cancellationToken)
    {
        var chunks = Chunks(bytes);
        Waiter waiter;
        lock (gate)
        {
            if (waiters.Count == 0 && used + chunks <= capacity)
            {
                used += chunks;
                return Task.FromResult(new Reservation(this, chunks));
            }

            waiter = new Waiter(this, chunks);
            waiter.Node = waiters.AddLast(waiter);
        }

        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.Register(static state => ((Waiter)state!).Cancel(), waiter);
        }

        return waiter.Task;
    }

    private int Chunks(long bytes) => (int)Math.Clamp((bytes + ChunkSize - 1) / ChunkSize, 0, capacity);

    /// <summary>A chunk for a reservation: one kept from an earlier body, or a new one.</summary>
    private byte[] Take()
    {
        lock (gate)
        {
            if (free.TryPop(out var chunk))
            {
                return chunk;
            }

            made++;
        }

        return GC.AllocateUninitializedArray<byte>(ChunkSize);
    }

    /// <summary>Takes back <paramref name="chunks"/> and <paramref name="reserved"/> chunks' worth of budget, and serves waiters.</summary>
    private void Release(List<byte[]> chunks, int reserved)
    {
        List<Waiter>? granted = null;
        lock (gate)
        {
            foreach (var chunk in chunks)
            {
                if (made > capacity)
                {
                    // Made beyond the budget for a body that grew: let it go.
                    made--;
                }
                else
                {
                    free.Push(chunk);
                }
            }

            used -= reserved;
            while (waiters.First is { } first && used + first.Value.Chunks <= capacity)
            {
                waiters.RemoveFirst();
                first.Value.Node = null;
                used += first.Value.Chunks;
                (granted ??= []).Add(first.Value);
            }
        }

        // Outside the lock: a continuation may run inline and reserve again.
        foreach (var waiter in granted ?? [])
        {
            waiter.Grant();
        }
    }

    /// <summary>
    /// Room for one body: its chunks, taken as the body is sized, held until disposed (disposing
    /// twice releases once).
    /// </summary>
    internal sealed class Reservation(BodyMemory memory, int reserved) : IDisposable
    {
        private readonly List<byte[]> chunks = [];
        private int reserved = reserved;
        private bool released;

        /// <summary>The chunks of the body, <see cref="ChunkSize"/> bytes each.</summary>
        public IReadOnlyList<byte[]> Chunks => chunks;

        /// <summary>
        /// Makes the reservation hold <paramref name="bytes"/>, without waiting: the body is
        /// sized now, and may be larger than reserved for only by what a value's encoding
        /// changed (chunks beyond the budget are then made, and let go afterwards).
        /// </summary>
        public void Size(long bytes)
        {
            var needed = (int)((bytes + ChunkSize - 1) / ChunkSize);
            while (chunks.Count < needed)
            {
                chunks.Add(memory.Take());
            }

            lock (memory.gate)
            {
                if (needed > reserved)
                {
                    memory.used += needed - reserved;
                    reserved = needed;
                }
            }
        }

        public void Dispose()
        {
            lock (memory.gate)
            {
                if (released)
                {
                    return;
                }

                released = true;
            }

            memory.Release(chunks, reserved);
        }
    }

    private sealed class Waiter(BodyMemory memory, int chunks)
    {
        private readonly TaskCompletionSource<Reservation> completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Chunks { get; } = chunks;

        public LinkedListNode<Waiter>? Node { get; set; }

        public CancellationTokenRegistration Registration { get; set; }

        public Task<Reservation> Task => completion.Task;

        public void Grant()
        {
            Registration.Dispose();
            if (!completion.TrySetResult(new Reservation(memory, Chunks)))
            {
                memory.Release([], Chunks);
            }
        }

        public void Cancel()
        {
            lock (memory.gate)
            {
                if (Node is null)
                {
                    // Granted already: the grant stands, and is released by whoever awaits it.
                    return;
                }

                memory.waiters.Remove(Node);
                Node = null;
            }

            completion.TrySetCanceled();
            // The head may have been waiting behind this one.
            memory.Release([], 0);
        }
    }
}
