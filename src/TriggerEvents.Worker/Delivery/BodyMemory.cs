namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The bytes of large request bodies one worker holds at once (<c>worker.body_memory</c>): a
/// large event waits here, before it is read from the database, until its body fits (issue 12:
/// 64 deliveries of 2 MB rows once held more than the manifest's memory limit). Waiters are
/// served in arrival order, so a large body is not passed over by smaller ones for ever.
/// </summary>
internal sealed class BodyMemory
{
    private readonly Lock gate = new();
    private readonly LinkedList<Waiter> waiters = new();
    private long used;

    /// <summary>A budget of <paramref name="capacity"/> bytes.</summary>
    public BodyMemory(long capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
    }

    /// <summary>The budget in bytes.</summary>
    public long Capacity { get; }

    /// <summary>Bytes reserved now.</summary>
    public long Used
    {
        get
        {
            lock (gate)
            {
                return used;
            }
        }
    }

    /// <summary>
    /// Waits until <paramref name="bytes"/> fit (at most the whole budget: configuration keeps
    /// every body within it) and reserves them until the reservation is disposed.
    /// </summary>
    public Task<Reservation> ReserveAsync(long bytes, CancellationToken cancellationToken)
    {
        bytes = Math.Clamp(bytes, 0, Capacity);
        Waiter waiter;
        lock (gate)
        {
            if (waiters.Count == 0 && used + bytes <= Capacity)
            {
                used += bytes;
                return Task.FromResult(new Reservation(this, bytes));
            }

            waiter = new Waiter(this, bytes);
            waiter.Node = waiters.AddLast(waiter);
        }

        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.Register(static state => ((Waiter)state!).Cancel(), waiter);
        }

        return waiter.Task;
    }

    private void Release(long bytes)
    {
        List<Waiter>? granted = null;
        lock (gate)
        {
            used -= bytes;
            while (waiters.First is { } first && used + first.Value.Bytes <= Capacity)
            {
                waiters.RemoveFirst();
                first.Value.Node = null;
                used += first.Value.Bytes;
                (granted ??= []).Add(first.Value);
            }
        }

        // Outside the lock: a continuation may run inline and reserve again.
        foreach (var waiter in granted ?? [])
        {
            waiter.Grant();
        }
    }

    /// <summary>Bytes held until disposed; disposing twice releases once.</summary>
    internal sealed class Reservation(BodyMemory memory, long bytes) : IDisposable
    {
        private long bytes = bytes;
        private bool released;

        /// <summary>The bytes held.</summary>
        public long Bytes
        {
            get
            {
                lock (memory.gate)
                {
                    return bytes;
                }
            }
        }

        /// <summary>
        /// Holds <paramref name="actual"/> bytes instead, without waiting: the body turned out to
        /// be another size than reserved for (only by what a value's encoding changed).
        /// </summary>
        public void Resize(long actual)
        {
            long freed;
            lock (memory.gate)
            {
                if (released)
                {
                    return;
                }

                freed = bytes - actual;
                bytes = actual;
                memory.used -= freed;
            }

            if (freed > 0)
            {
                memory.Release(0);
            }
        }

        public void Dispose()
        {
            long held;
            lock (memory.gate)
            {
                if (released)
                {
                    return;
                }

                released = true;
                held = bytes;
            }

            memory.Release(held);
        }
    }

    private sealed class Waiter(BodyMemory memory, long bytes)
    {
        private readonly TaskCompletionSource<Reservation> completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public long Bytes { get; } = bytes;

        public LinkedListNode<Waiter>? Node { get; set; }

        public CancellationTokenRegistration Registration { get; set; }

        public Task<Reservation> Task => completion.Task;

        public void Grant()
        {
            Registration.Dispose();
            if (!completion.TrySetResult(new Reservation(memory, Bytes)))
            {
                memory.Release(Bytes);
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
            memory.Release(0);
        }
    }
}
