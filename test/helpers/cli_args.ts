/** An integer flag of a test script in [min, max], or exit 2 with the reason. */
export function intArg(name: string, raw: string | undefined, min: number, max: number): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`--${name} must be an integer from ${min} to ${max} (got ${raw})\n`);
    process.exit(2);
  }
  return n;
}
