// Report browser test: two short, bounded loopback runs of wsecho-load
// against wsecho (connection stages, rate stages), `wsecho-load report` on
// both, then headless Debian Chromium (never a downloaded browser, driven
// by playwright-core) opens the page offline and checks that every chart
// is there and drawn, the runs are overlaid, and nothing was fetched.
// Usage: node run.mjs [target/release]  (where wsecho and wsecho-load are)
// Saves the page and a screenshot to <target>/report-browser/. Gives up
// after 120 s.
import { chromium } from "playwright-core";
import { spawn, execFile } from "node:child_process";
import { createServer, connect } from "node:net";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import assert from "node:assert/strict";

const here = dirname(fileURLToPath(import.meta.url));
const bins = resolve(process.argv[2] ?? `${here}/../../../target/release`);
const out = resolve(bins, "..", "report-browser");
const run = promisify(execFile);

let server, browser;
const deadline = setTimeout(() => fail(new Error("report browser test took over 120 s")), 120_000);

function step(name) {
  console.log(`report-browser: ${name}`);
}

async function fail(err) {
  console.error(`report-browser: FAILED: ${err.stack ?? err}`);
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

async function main() {
  mkdirSync(out, { recursive: true });
  const port = await freePort();
  step(`start wsecho on 127.0.0.1:${port}`);
  server = spawn(`${bins}/wsecho`, ["--listen", `127.0.0.1:${port}`, "--log", "warn"], { stdio: "inherit" });
  await waitForPort(port);
  const url = `ws://127.0.0.1:${port}/`;
  const load = (args) => run(`${bins}/wsecho-load`, [url, "-q", ...args], { timeout: 30_000 });
  step("two bounded runs: connection stages, rate stages");
  await load(["--stages", "2s:20,3s:20,2s:40,3s:40,1s:0", "--json", `${out}/connection-stages.json`]);
  await load(["-c", "8", "--rate-stages", "2s:2k,3s:2k,2s:5k,4s:5k", "--json", `${out}/rate-stages.json`]);
  server.kill();
  server = undefined;
  const page_file = `${out}/report.html`;
  step("wsecho-load report");
  await run(`${bins}/wsecho-load`, ["report", `${out}/connection-stages.json`, `${out}/rate-stages.json`, "-o", page_file]);

  step("launch /usr/bin/chromium");
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
  const fetched = [];
  page.on("request", (r) => fetched.push(r.url()));
  const pageUrl = pathToFileURL(page_file).href;
  await page.goto(pageUrl);

  step("the charts are there and drawn");
  for (const id of ["throughput", "connections", "latency-over-time", "latency-distribution"]) {
    const svg = page.locator(`figure.chart#${id} svg`);
    assert.equal(await svg.count(), 1, `${id}: one svg`);
    const box = await svg.boundingBox();
    assert.ok(box && box.width > 400 && box.height > 200, `${id}: drawn at ${JSON.stringify(box)}`);
    // Lines are polylines or paths with many points, one per run at least.
    const lines = await svg.evaluate((el) =>
      [...el.querySelectorAll("polyline, path")].filter((p) => {
        const d = p.getAttribute("points") ?? p.getAttribute("d") ?? "";
        return d.split(/[ ,LM]+/).length > 8;
      }).length);
    assert.ok(lines >= 2, `${id}: ${lines} data lines, want one per run`);
    const text = await svg.textContent();
    for (const run of ["connection-stages", "rate-stages"]) {
      assert.ok(text.includes(run), `${id}: legend names ${run}`);
    }
  }
  step("the summary table compares both runs");
  const headers = await page.locator("table#summary tr").first().locator("th").allTextContents();
  assert.deepEqual(headers.slice(1), ["connection-stages", "rate-stages"]);
  assert.ok((await page.locator("table#summary tr").count()) > 10);
  step("self-contained: nothing fetched but the page");
  assert.deepEqual(fetched, [pageUrl]);

  await page.setViewportSize({ width: 1000, height: 800 });
  await page.screenshot({ path: `${out}/report.png`, fullPage: true });
  step(`ok (screenshot: ${out}/report.png)`);
  await browser.close();
  clearTimeout(deadline);
}

main().catch(fail);
