// Echo over the worker's own port: the shard owners' transport (src/server/shard_handle.ts).
import { parentPort } from "node:worker_threads";

const port = parentPort;
if (port === null) throw new Error("must run in a worker thread");
port.on("message", (msg: unknown) => port.postMessage(msg));
