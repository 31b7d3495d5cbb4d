using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Delivery;

/// <summary>CPU time of the three parties of a delivery phase: the worker, the server, the receiver.</summary>
internal sealed record CpuSplit(TimeSpan Worker, TimeSpan Server, TimeSpan Receiver)
{
    /// <summary>
    /// Reads all three now. The receiver is this benchmark process, which does nothing else
    /// while a drain runs.
    /// </summary>
    public static CpuSplit Read(WorkerUnderTest worker, BenchDatabase database) =>
        new(worker.Cpu, database.ServerCpu(), CpuTime.OfThisProcess());

    public static CpuSplit operator -(CpuSplit end, CpuSplit start) =>
        new(end.Worker - start.Worker, end.Server - start.Server, end.Receiver - start.Receiver);

    /// <summary>Microseconds of CPU per event for each party.</summary>
    public string PerEvent(long events) =>
        $"worker {Micros(Worker, events):N0} µs, PostgreSQL {Micros(Server, events):N0} µs, receiver {Micros(Receiver, events):N0} µs";

    private static double Micros(TimeSpan time, long events) => time.TotalMicroseconds / Math.Max(1, events);
}
