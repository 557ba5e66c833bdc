// The Bun echo peer: `Bun.serve` with `websocket` handlers, every text or binary message sent back
// unchanged to its sender (`ws.send(message)`), as Bun's WebSocket docs write it.
//
// Protocol `plain-echo`: upgrades on any path; `--host`, `--port` (0 = a free port); prints
// `listening on http://HOST:PORT` when ready.

import { listenOptions, ready, upgrade } from "./peer.ts";

const server = Bun.serve({
  ...listenOptions(),
  fetch: upgrade,
  websocket: {
    message(ws, message) {
      ws.send(message);
    },
  },
});
ready(server);
