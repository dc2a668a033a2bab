// Child process for the WAL crash loop: appends forever with many concurrent appenders and
// prints "ack <lsn> <tag>" for every record once it is durable. The parent SIGKILLs it.
import { Wal } from "../../src/wal/wal.js";

const [dir, tagPrefix, segmentBytesText] = process.argv.slice(2);
if (dir === undefined || tagPrefix === undefined) {
  process.stderr.write("usage: wal_writer_child <dir> <tag-prefix> [segment-bytes]\n");
  process.exit(2);
}
const segmentSizeBytes = Number(segmentBytesText ?? 1024 * 1024);
const APPENDERS_PER_ROUND = 64;

const wal = await Wal.open({
  dir,
  shardId: 0,
  segmentSizeBytes,
  checkpointLsn: 0,
  onRecord: () => {},
});
process.stdout.write(`ready ${wal.nextLsn}\n`);

let counter = 0;
function round(): void {
  const lines: string[] = [];
  let lastLsn = 0;
  for (let i = 0; i < APPENDERS_PER_ROUND; i++) {
    const tag = `${tagPrefix}-${counter++}`;
    // Vary sizes so batches straddle blocks and segments rotate.
    const body = tag.padEnd(40 + ((counter * 37) % 900), ".");
    lastLsn = wal.append(1, Buffer.from(body));
    lines.push(`ack ${lastLsn} ${tag}`);
  }
  wal.whenDurable(lastLsn, (err) => {
    if (err !== null) {
      process.stderr.write(`append failed: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`${lines.join("\n")}\n`);
    setImmediate(round);
  });
}
round();
round();
