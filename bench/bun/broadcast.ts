// The Bun broadcast peer: `Bun.serve` with `websocket` handlers and Bun's built-in topics, as Bun's
// WebSocket docs write a chat room: every connection subscribes to one topic on open, and every text
// or binary message is published to it with `server.publish`, which delivers to every subscriber,
// the sender included (unlike `ws.publish`, which leaves the sender out).
//
// Protocol `plain-broadcast`: upgrades on any path; `--host`, `--port` (0 = a free port); prints
// `listening on http://HOST:PORT` when ready.

import { listenOptions, ready, upgrade } from "./peer.ts";

const ALL = "all";

const server = Bun.serve({
  ...listenOptions(),
  fetch: upgrade,
  websocket: {
    open(ws) {
      ws.subscribe(ALL);
    },
    message(_ws, message) {
      server.publish(ALL, message);
    },
  },
});
ready(server);
