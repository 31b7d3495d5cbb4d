// Runs graphile-worker for the delivery benchmark: its tasks/ directory, BENCH_JOBS concurrent
// jobs, and a logger that drops per-job lines (graphile-worker logs every completed job at info,
// which a production deployment would turn down too). Exits on SIGTERM.
const { run, Logger } = require("graphile-worker");

const quiet = new Logger(() => (level, message) => {
  if (level === "error") {
    console.error(message);
  }
});

async function main() {
  const runner = await run({
    connectionString: process.env.DATABASE_URL,
    concurrency: Number(process.env.BENCH_JOBS || 32),
    taskDirectory: `${__dirname}/tasks`,
    logger: quiet,
    noHandleSignals: true,
  });
  console.log("ready");
  process.on("SIGTERM", () => runner.stop().then(() => process.exit(0)));
  await runner.promise;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
