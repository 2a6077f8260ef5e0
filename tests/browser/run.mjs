// Browser test: headless Debian Chromium (never a downloaded browser) driven
// by playwright-core through the page wsecho serves at `/`:
//   1. echo through the page's own controls,
//   2. the tutorial dialogue,
//   3. two pages in one room chatting, a third in another room seeing nothing.
// Usage: node run.mjs [path/to/wsecho]   (default: ../../target/release/wsecho)
// Saves screenshots to ../../target/browser/. Bounded: gives up after 90 s.
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { createServer, connect } from "node:net";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const bin = resolve(process.argv[2] ?? `${root}/target/release/wsecho`);
const shots = `${root}/target/browser`;
const WAIT = { timeout: 10_000 };

let server, browser;
const deadline = setTimeout(() => fail(new Error("browser test took over 90 s")), 90_000);

function step(name) {
  console.log(`browser: ${name}`);
}

async function fail(err) {
  console.error(`browser: FAILED: ${err.stack ?? err}`);
  await browser?.close().catch(() => {});
  server?.kill();
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

  step(`PASS (screenshots in ${shots})`);
  clearTimeout(deadline);
  await browser.close();
  server.kill();
}

main().catch(fail);
