// The zero-hop floor for the HTTP benchmark: a bare uWS app whose POST /floor does one
// 4 KiB write + fdatasync into a pre-written file on the uWS thread itself, and GET /ping,
// a trivial route that shows the load generator's own ceiling. Prints its port.
import fs from "node:fs";
import path from "node:path";
import { loadUws } from "../src/server/uws_engine.js";

const dir = process.argv[2];
if (dir === undefined) throw new Error("usage: floor_server <dir>");
const FILE_BYTES = 64 * 1024 * 1024;
const BLOCK_BYTES = 4096;
const file = path.join(dir, "floor.dat");
fs.writeFileSync(file, Buffer.alloc(FILE_BYTES));
const fd = fs.openSync(file, "r+");
fs.fdatasyncSync(fd);
const block = Buffer.alloc(BLOCK_BYTES, 0x5a);
let offset = 0;

const { uws } = loadUws();
const app = uws.App();
app.get("/ping", (res) => {
  res.end("ok");
});
app.post("/floor", (res) => {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  res.onData((_chunk, isLast) => {
    if (!isLast) return;
    fs.writeSync(fd, block, 0, BLOCK_BYTES, offset);
    fs.fdatasyncSync(fd);
    offset = (offset + BLOCK_BYTES) % FILE_BYTES;
    if (!aborted) res.cork(() => res.writeStatus("201 Created").end('{"ok":true}'));
  });
});
app.listen("127.0.0.1", 0, (socket) => {
  if (socket === false) throw new Error("floor server cannot listen");
  process.stdout.write(`FLOOR_PORT ${uws.us_socket_local_port(socket as never)}\n`);
});
