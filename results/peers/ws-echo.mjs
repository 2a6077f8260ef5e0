// The tutorial's Node.js `ws` server in pure-echo form: every message goes
// back to its sender as it came (text stays text, binary stays binary).
//   node ws-echo.mjs 127.0.0.1:9903 [--deflate]
// --deflate: permessage-deflate with ws's own defaults (context takeover
// both ways, 1 KiB threshold, 10 concurrent zlib jobs), as a user who turns
// it on gets it.
import { WebSocketServer } from "ws";

const [host, port] = (process.argv[2] ?? "127.0.0.1:9903").split(":");
const perMessageDeflate = process.argv.includes("--deflate");
const wss = new WebSocketServer({ host, port: Number(port), maxPayload: 64 * 1024 * 1024, perMessageDeflate });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  // Without this, one malformed frame from any client kills the process.
  ws.on("error", () => ws.terminate());
});
wss.on("listening", () => console.log(`ws echo listening on ${host}:${port}`));
