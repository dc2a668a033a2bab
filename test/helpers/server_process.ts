// The server child-process helpers live in src/cli/server_child.ts (the DR drill uses them too).
import {
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "../../src/cli/server_child.js";

export * from "../../src/cli/server_child.js";

export interface ServerWithKeys {
  dataDir: string;
  server: ServerProcess;
  adminKey: string;
  agentKey: string;
  readerKey: string;
}

/** A fresh data directory, a running server, and an agent and a reader key. */
export async function startServerWithKeys(
  agentPrincipal?: string,
  env?: Record<string, string>,
): Promise<ServerWithKeys> {
  const dataDir = newDataDir();
  const server = await startServerProcess({ dataDir, ...(env !== undefined ? { env } : {}) });
  const adminKey = readAdminKeyFile(dataDir);
  const agentKey = await createKey(server.baseUrl, adminKey, "agent", agentPrincipal);
  const readerKey = await createKey(server.baseUrl, adminKey, "reader");
  return { dataDir, server, adminKey, agentKey, readerKey };
}
