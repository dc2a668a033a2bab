// The server child-process helpers live in src/cli/server_child.ts (the DR drill uses them too).
export * from "../../src/cli/server_child.js";
