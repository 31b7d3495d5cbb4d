// Every fixture owns its database, receiver and worker processes, so fixtures run in parallel.
[assembly: Parallelizable(ParallelScope.Fixtures)]
[assembly: LevelOfParallelism(3)]
