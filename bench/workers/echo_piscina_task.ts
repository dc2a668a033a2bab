// Echo as a piscina task: the alternative transport for shard owners (docs/architecture.md).
export default function echo(msg: unknown): unknown {
  return msg;
}
