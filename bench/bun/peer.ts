// What the Bun peers share: the command line every benchmark server takes (`--host`, `--port`,
// 0 = a free port) and the `listening on http://HOST:PORT` line the harness waits for.

export function listenOptions(): { hostname: string; port: number } {
  const args = Bun.argv.slice(2);
  let hostname = "127.0.0.1";
  let port = 0;
  for (let i = 0; i < args.length; i++) {
    const value = args[i + 1];
    if (args[i] === "--host" && value !== undefined) {
      hostname = value;
      i++;
    } else if (args[i] === "--port" && value !== undefined) {
      port = Number(value);
      i++;
    } else {
      throw new Error(`unknown argument ${args[i]} (--host HOST, --port PORT)`);
    }
  }
  return { hostname, port };
}

export function ready(server: { hostname?: string; port?: number }): void {
  console.log(`listening on http://${server.hostname}:${server.port}`);
}

// Upgrades every request, whatever its path, as Bun's WebSocket docs do.
export function upgrade(req: Request, server: { upgrade(req: Request): boolean }): Response | undefined {
  if (server.upgrade(req)) return undefined;
  return new Response("WebSocket upgrade expected", { status: 426 });
}
