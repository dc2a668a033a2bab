// A real size-limited filesystem for the disk-full tests: a tmpfs the test mounts (needs
// root). Where mounting is not allowed the test skips, and says why.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { tempDir } from "./wal_fixtures.js";

export interface SmallDisk {
  /** The mount point (an empty directory when skipReason is set). */
  readonly dir: string;
  /** Why the tmpfs could not be mounted, or null when it is. */
  readonly skipReason: string | null;
  /** Remounts with more room (`size` as mount takes it, e.g. "64m"). */
  grow(size: string): void;
  /** Unmounts and deletes the mount point. */
  remove(): void;
}

/** Mounts a `size` tmpfs (e.g. "2m") on a new temporary directory named from `prefix`. */
export function mountSmallDisk(prefix: string, size: string): SmallDisk {
  const dir = tempDir(prefix);
  let skipReason: string | null = null;
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
  } catch (err) {
    skipReason = `cannot mount a size-limited tmpfs here: ${(err as Error).message.split("\n")[0]}`;
    console.warn(`SKIPPED disk-full test (${prefix}): ${skipReason}`);
  }
  return {
    dir,
    skipReason,
    grow: (bigger) => execFileSync("mount", ["-o", `remount,size=${bigger}`, dir]),
    remove: () => {
      if (skipReason === null) execFileSync("umount", ["-l", dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
