// Browser test: headless Debian Chromium (never a downloaded browser) driven
// by playwright-core through the page wsecho serves at `/`:
//   1. echo through the page's own controls,
//   2. the tutorial dialogue,
//   3. two pages in one room chatting, a third in another room seeing nothing,
//   4. compression: the page shows the permessage-deflate Chromium
//      negotiated (ws.extensions), and the tutorial's own client code runs
//      with compression on, as does a large compressible echo,
//   5. the page over https:// with HTTP/2 (a throwaway self-signed
//      certificate, made with openssl, that Chromium is told to accept),
//      then wss:// echo from it; the server's metrics tell which protocol the
//      WebSocket used (RFC 8441 over the page's h2 connection, or a
//      connection of its own over http/1.1), and the test passes either way.
// Usage: node run.mjs [path/to/wsecho]   (default: ../../target/release/wsecho)
// Saves screenshots to ../../target/browser/. Bounded: gives up after 90 s.
import { chromium } from "playwright-core";
import { execFileSync, spawn } from "node:child_process";
import { createServer, connect } from "node:net";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = resolve(process.argv[2] ?? `${root}/target/release/wsecho`);
const shots = `${root}/target/browser`;
const WAIT = { timeout: 10_000 };

let server, tlsServer, browser;
const deadline = setTimeout(() => fail(new Error("browser test took over 90 s")), 90_000);

function step(name) {
  console.log(`browser: ${name}`);
}

async function fail(err) {
  console.error(`browser: FAILED: ${err.stack ?? err}`);
  await browser?.close().catch(() => {});
  server?.kill();
  tlsServer?.kill();
  process.exit(1);
}

function freePort() {
  return new Promise((ok, ko) => {
    const s = createServer();
    s.on("error", ko);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

async function waitForPort(port) {
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((ok) => {
      const c = connect(port, "127.0.0.1", () => { c.end(); ok(true); });
      c.on("error", () => ok(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`wsecho did not listen on ${port}`);
}

/** Opens the page and connects it to `route` (echo, tutorial, chat). */
async function openPage(base, route, room) {
  const page = await browser.newPage({ viewport: { width: 420, height: 640 } });
  page.on("pageerror", (e) => fail(e));
  await page.goto(`${base}/`);
  await page.selectOption("#route", route);
  if (room) await page.fill("#room", room);
  await page.click("#connect");
  await page.locator("#state", { hasText: "open" }).waitFor(WAIT);
  // wsecho agrees to Chromium's offer on every route (--deflate on).
  await page.locator("#compression", { hasText: "permessage-deflate" }).waitFor(WAIT);
  return page;
}

async function send(page, text) {
  await page.fill("#message", text);
  await page.click("#send");
}

/** Waits until the page's log shows `text` as received. */
async function received(page, text) {
  await page.locator("#log li.received", { hasText: text }).first().waitFor(WAIT);
}

async function receivedTexts(page) {
  return page.locator("#log li.received span").allTextContents();
}

async function main() {
  mkdirSync(shots, { recursive: true });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  step(`start ${bin} on ${base}`);
  server = spawn(bin, ["--listen", `127.0.0.1:${port}`], { stdio: ["ignore", "ignore", "inherit"] });
  server.on("exit", (code) => code !== null && code !== 0 && fail(new Error(`wsecho exited with ${code}`)));
  await waitForPort(port);

  step("launch /usr/bin/chromium");
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
      // Only the https step's throwaway certificate needs this.
      "--ignore-certificate-errors",
    ],
  });

  step("echo through the page's controls");
  const echo = await openPage(base, "echo");
  await send(echo, "hello, echo ✓");
  await received(echo, "hello, echo ✓");
  await echo.click("#disconnect");
  await echo.locator("#log li.event", { hasText: "closed: code 1000" }).waitFor(WAIT);
  await echo.screenshot({ path: `${shots}/echo.png` });

  step("tutorial dialogue");
  const tutorial = await openPage(base, "tutorial");
  await received(tutorial, "Hello webSocket");
  await send(tutorial, "I am listening");
  await received(tutorial, 'I heard you say "I am listening"');
  assert.deepEqual(await receivedTexts(tutorial), ["Hello webSocket", 'I heard you say "I am listening"']);

  step("two pages chatting in one room, a third elsewhere");
  const alice = await openPage(base, "chat", "lobby");
  const bob = await openPage(base, "chat", "lobby");
  const carol = await openPage(base, "chat", "elsewhere");
  await send(alice, "hi bob, it's alice");
  await received(bob, "hi bob, it's alice");
  await send(bob, "hello alice");
  await received(alice, "hello alice");
  // Carol's room gets a message of its own; it must be the first and only
  // thing she has received, so nothing from the lobby reached her.
  const dave = await openPage(base, "chat", "elsewhere");
  await send(dave, "only for elsewhere");
  await received(carol, "only for elsewhere");
  assert.deepEqual(await receivedTexts(carol), ["only for elsewhere"]);
  assert.deepEqual(await receivedTexts(alice), ["hello alice"], "alice must not get her own message");
  assert.deepEqual(await receivedTexts(bob), ["hi bob, it's alice"], "bob must not get his own message");
  await alice.screenshot({ path: `${shots}/chat-alice.png` });
  await bob.screenshot({ path: `${shots}/chat-bob.png` });

  await compressed(base);

  await overHttp2();

  step(`PASS (screenshots in ${shots})`);
  clearTimeout(deadline);
  await browser.close();
  server.kill();
  tlsServer.kill();
}

/** The tutorial's client code (seed/websocket-architecture.md) with
 * compression negotiated, then a large compressible echo. */
async function compressed(base) {
  step("the tutorial's client code with permessage-deflate negotiated");
  const page = await browser.newPage();
  page.on("pageerror", (e) => fail(e));
  await page.goto(`${base}/`);
  const ws = base.replace("http://", "ws://");
  const tutorial = await page.evaluate((url) => new Promise((resolve, reject) => {
    // The tutorial's code, but sending once open: a browser throws on
    // send() while the socket is still connecting.
    const socket = new WebSocket(url);
    const got = [];
    socket.onmessage = (event) => {
      got.push(event.data);
      if (got.length === 2) {
        resolve({ extensions: socket.extensions, got });
        socket.close();
      }
    };
    socket.onopen = () => socket.send("I am listening");
    socket.onerror = () => reject(new Error("WebSocket error"));
  }), `${ws}/tutorial`);
  assert.match(tutorial.extensions, /^permessage-deflate/, "Chromium and wsecho must agree on permessage-deflate");
  assert.deepEqual(tutorial.got, ["Hello webSocket", 'I heard you say "I am listening"']);

  step("a 1 MB compressible text echo, compressed both ways");
  const echo = await page.evaluate((url) => new Promise((resolve, reject) => {
    const text = '{"user":"écho","text":"hello deflate"},'.repeat(30_000);
    const socket = new WebSocket(url);
    socket.onopen = () => socket.send(text);
    socket.onmessage = (event) => { resolve({ extensions: socket.extensions, same: event.data === text }); socket.close(); };
    socket.onerror = () => reject(new Error("WebSocket error"));
  }), `${ws}/echo`);
  assert.match(echo.extensions, /^permessage-deflate/);
  assert.ok(echo.same, "the echo must be the message");
  const metrics = await page.evaluate(async () => (await fetch("/metrics")).text());
  const line = metrics.split("\n").find((l) => l.startsWith("wsecho_deflate_connections_total "));
  assert.ok(line && Number(line.split(" ")[1]) >= 2, `deflate connections counted:\n${line}`);
  await page.close();
}

/** The page over https:// and HTTP/2, and a wss:// echo from it. */
async function overHttp2() {
  step("https:// with HTTP/2: the page, then wss:// from it");
  const dir = mkdtempSync(join(tmpdir(), "wsecho-browser-"));
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-days", "1",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { stdio: "ignore" });
  const port = await freePort();
  tlsServer = spawn(bin, [
    "--listen", `127.0.0.1:${port}`, "--tls-cert", `${dir}/cert.pem`, "--tls-key", `${dir}/key.pem`,
  ], { stdio: ["ignore", "ignore", "inherit"] });
  tlsServer.on("exit", (code) => code !== null && code !== 0 && fail(new Error(`wsecho (TLS) exited with ${code}`)));
  await waitForPort(port);

  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 420, height: 640 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => fail(e));
  await page.goto(`https://localhost:${port}/`);
  const pageProtocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
  assert.equal(pageProtocol, "h2", "the page must come over HTTP/2");

  await page.selectOption("#route", "echo");
  await page.click("#connect");
  await page.locator("#state", { hasText: "open" }).waitFor(WAIT);
  await send(page, "hello over wss ✓");
  await received(page, "hello over wss ✓");

  const metrics = await page.evaluate(async () => (await fetch("/metrics")).text());
  const opened = (protocol) => {
    const line = metrics.split("\n").find((l) => l.startsWith(`wsecho_websockets_total{protocol="${protocol}"} `));
    return line ? Number(line.split(" ")[1]) : 0;
  };
  const [h2, h1] = [opened("h2"), opened("http/1.1")];
  assert.equal(h2 + h1, 1, `one WebSocket expected in the metrics:\n${metrics}`);
  step(`Chromium opened the wss:// WebSocket over ${h2 ? "h2 (RFC 8441 extended CONNECT)" : "http/1.1 (a connection of its own)"}`);
  await page.screenshot({ path: `${shots}/https-h2.png` });
}

main().catch(fail);
