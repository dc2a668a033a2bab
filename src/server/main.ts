// `npm start`: the StemeDB server process.
import { pino } from "pino";
import { ConfigError, loadConfig } from "../config.js";
import { absorbLmdbCommitFailure } from "../store/lmdb_failure.js";
import { ManifestError } from "../store/manifest.js";
import { StartupError, startServer } from "./app.js";

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`stemedb: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const logger = pino({ level: config.logLevel, base: { service: "stemedb" } });

// As in worker_main.ts: a failed commit of the meta env also rejects a promise lmdb-js made
// and left unobserved. The write's own promise fails the request (5xx); the process stays.
// Anything else unhandled still ends the process.
process.on("unhandledRejection", (reason) => {
  if (absorbLmdbCommitFailure(reason)) {
    logger.error({ err: reason }, "an LMDB commit failed");
    return;
  }
  throw reason;
});

try {
  const server = await startServer(config, logger);
  if (server.createdAdminKey !== null) {
    // Shown once, on purpose outside the structured log (logs never carry secrets).
    process.stdout.write(
      `\nStemeDB admin key (shown once; also saved with mode 0600 in ${config.dataDir}/admin.key):\n  ${server.createdAdminKey}\n\n`,
    );
  }
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    logger.info({ signal }, "shutting down: draining in-flight requests and checkpointing");
    server.shutdown().then(
      () => {
        logger.info("stopped cleanly");
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // Only now say so: whoever waits for this line may signal us at once.
  logger.info(
    {
      addr: `${config.bindHost}:${server.port}`,
      port: server.port,
      shards: config.shardCount,
      http_engine: server.context.engine.engine,
      data_dir: config.dataDir,
    },
    "listening",
  );
} catch (err) {
  if (err instanceof StartupError || err instanceof ManifestError) {
    logger.fatal({ code: (err as StartupError).code ?? "manifest" }, err.message);
    process.exit(2);
  }
  logger.fatal({ err }, "startup failed");
  process.exit(1);
}
