// The Bun HTTP peer: Bun's hello world (`GET /` answers `Hello, World!`), as Bun's docs write it.
//
// Protocol: `--host`, `--port` (0 = a free port); prints `listening on http://HOST:PORT` when ready.

import { listenOptions, ready } from "./peer.ts";

const server = Bun.serve({
  ...listenOptions(),
  fetch() {
    return new Response("Hello, World!");
  },
});
ready(server);
