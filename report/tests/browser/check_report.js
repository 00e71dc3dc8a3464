// Loads podtrace HTML reports in headless Chromium over the DevTools protocol (a pipe, no
// network port) and prints what the tests assert on, as one JSON object on stdout:
// console errors, exceptions, CSP violations, dialogs (alert() from an injection), whether
// the graph image decoded and is visible, trace-list rows, waterfall rows and bars, and
// (optionally) what a filter for an untrusted string shows. Structure, not pixels.
//
// usage: node check_report.js <chromium> <config.json>
// config: {"pages": [{"path": "/abs/report.html", "screenshot": "/abs/out.png" | null, "height": 1500,
//                     "probe": "text to filter for" | null, "hash": "#trace=<id>" | null}],
//          "timeout_ms": 60000}
"use strict";
const { spawn } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const [chromium, configPath] = process.argv.slice(2);
const config = JSON.parse(fs.readFileSync(configPath, "utf8"));
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "podtrace-chromium-"));
const browser = spawn(chromium, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
  "--disable-dev-shm-usage", "--remote-debugging-pipe", "--user-data-dir=" + userDir, "about:blank",
], { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
let stderr = "";
browser.stderr.on("data", (d) => { stderr += d; });

function cleanup() {
  try { browser.kill("SIGKILL"); } catch (e) { /* already gone */ }
  try { fs.rmSync(userDir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
}
const deadline = setTimeout(() => {
  process.stdout.write(JSON.stringify({ fatal: "timeout", stderr: stderr.slice(-2000) }) + "\n");
  cleanup();
  process.exit(3);
}, config.timeout_ms || 60000);

const toBrowser = browser.stdio[3];
const fromBrowser = browser.stdio[4];
let nextId = 1;
const pending = new Map();
const listeners = [];
let buf = Buffer.alloc(0);
fromBrowser.on("data", (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  let end;
  while ((end = buf.indexOf(0)) >= 0) {
    const msg = JSON.parse(buf.subarray(0, end).toString("utf8"));
    buf = buf.subarray(end + 1);
    if (msg.id && pending.has(msg.id)) {
      const { resolve, reject } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) reject(new Error(JSON.stringify(msg.error))); else resolve(msg.result);
    } else if (msg.method) {
      listeners.forEach((l) => l(msg));
    }
  }
});
function send(method, params, sessionId) {
  const id = nextId++;
  const msg = { id, method, params: params || {} };
  if (sessionId) msg.sessionId = sessionId;
  toBrowser.write(JSON.stringify(msg) + "\0");
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function evaluate(session, expr) {
  const r = await send("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true }, session);
  if (r.exceptionDetails) throw new Error("evaluate failed: " + JSON.stringify(r.exceptionDetails));
  return r.result.value;
}

async function waitFor(session, expr, ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await evaluate(session, expr)) return true;
    await sleep(50);
  }
  return false;
}

// What the page shows, read from the live DOM.
const INSPECT = `(() => {
  const vis = (e) => { if (!e) return false; const r = e.getBoundingClientRect();
    const s = getComputedStyle(e); return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none"; };
  const img = document.getElementById("graph-img");
  const bars = [...document.querySelectorAll("#waterfall .wf-bar")];
  return {
    title: document.title,
    graph: { visible: vis(img), complete: !!(img && img.complete), natural_width: img ? img.naturalWidth : 0,
             natural_height: img ? img.naturalHeight : 0, src_prefix: img ? img.getAttribute("src").slice(0, 26) : "" },
    trace_rows: document.querySelectorAll("#trace-list tbody tr[data-trace-id]").length,
    pager: (document.getElementById("pager-label") || {}).textContent,
    waterfall_rows: document.querySelectorAll("#waterfall .wf-row[data-span-id]").length,
    waterfall_visible: vis(document.getElementById("waterfall")),
    visible_bars: bars.filter(vis).length,
    max_depth_px: Math.max(0, ...[...document.querySelectorAll("#waterfall .wf-label")].map((l) => parseInt(l.style.paddingLeft) || 0)),
    services_rows: document.querySelectorAll("#services tbody tr").length,
    edges_rows: document.querySelectorAll("#edges tbody tr").length,
    summary_rows: document.querySelectorAll("#summary-table tr").length,
    left_out: (document.getElementById("left-out") || {}).textContent || null,
    left_out_visible: vis(document.getElementById("left-out")),
    scripts: document.scripts.length,
    selected_trace: (document.querySelector("#trace-list tr.selected") || { dataset: {} }).dataset.traceId || null,
    waterfall_trace: (document.querySelector("#waterfall .wf-head code") || {}).textContent || null,
    location_hash: location.hash,
    injected_elements: document.querySelectorAll("main script, main img:not(#graph-img), main iframe").length,
  };
})()`;

async function probe(session, text) {
  await evaluate(session, `(() => { const f = document.getElementById("trace-filter");
    f.value = ${JSON.stringify(text)}; f.dispatchEvent(new Event("input")); })()`);
  await sleep(400);
  return evaluate(session, `(() => {
    const rows = [...document.querySelectorAll("#trace-list tbody tr[data-trace-id]")];
    if (rows.length) rows[0].click();
    const spanRows = [...document.querySelectorAll("#waterfall .wf-row[data-span-id]")];
    const hit = spanRows.find((r) => r.querySelector(".wf-name").textContent === ${JSON.stringify(text)});
    if (hit) hit.click();
    const detail = hit ? hit.nextElementSibling : null;
    return { matching_traces: rows.length, span_row_found: !!hit,
             span_name_text: hit ? hit.querySelector(".wf-name").textContent : null,
             detail_open: !!(detail && detail.classList.contains("wf-detail")),
             detail_text: detail ? detail.textContent.slice(0, 2000) : null,
             injected_elements: document.querySelectorAll("main script, main img:not(#graph-img), main iframe").length,
             location_hash: location.hash };
  })()`);
}

async function checkPage(page) {
  const events = { console_errors: [], exceptions: [], log_errors: [], dialogs: [] };
  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const onEvent = (msg) => {
    if (msg.sessionId !== sessionId) return;
    const p = msg.params;
    if (msg.method === "Runtime.consoleAPICalled" && (p.type === "error" || p.type === "assert"))
      events.console_errors.push(p.args.map((a) => a.value || a.description).join(" "));
    else if (msg.method === "Runtime.exceptionThrown")
      events.exceptions.push(p.exceptionDetails.exception ? p.exceptionDetails.exception.description : p.exceptionDetails.text);
    else if (msg.method === "Log.entryAdded" && p.entry.level === "error")
      events.log_errors.push(p.entry.source + ": " + p.entry.text);
    else if (msg.method === "Page.javascriptDialogOpening") {
      events.dialogs.push(p.type + ": " + p.message);
      send("Page.handleJavaScriptDialog", { accept: false }, sessionId).catch(() => {});
    }
  };
  listeners.push(onEvent);
  await send("Page.enable", {}, sessionId);
  await send("Runtime.enable", {}, sessionId);
  await send("Log.enable", {}, sessionId);
  await send("Emulation.setDeviceMetricsOverride",
    { width: 1400, height: page.height || 1500, deviceScaleFactor: 1, mobile: false }, sessionId);
  const t0 = Date.now();
  await send("Page.navigate", { url: "file://" + page.path + (page.hash || "") }, sessionId);
  const ready = await waitFor(sessionId, `document.readyState === "complete" && document.body && document.body.dataset.ready === "1"`,
    config.timeout_ms ? config.timeout_ms / 2 : 30000);
  const ready_ms = Date.now() - t0;
  await waitFor(sessionId, `(() => { const i = document.getElementById("graph-img"); return !i || i.complete; })()`, 5000);
  const result = { path: page.path, ready, ready_ms, dom: await evaluate(sessionId, INSPECT) };
  if (page.screenshot) {
    const shot = await send("Page.captureScreenshot", { format: "png" }, sessionId);
    fs.writeFileSync(page.screenshot, Buffer.from(shot.data, "base64"));
    result.screenshot = page.screenshot;
  }
  if (page.probe) result.probe = await probe(sessionId, page.probe);
  await sleep(100);
  result.events = events;
  await send("Target.closeTarget", { targetId });
  listeners.splice(listeners.indexOf(onEvent), 1);
  return result;
}

(async () => {
  const out = { pages: [] };
  try {
    for (const page of config.pages) out.pages.push(await checkPage(page));
  } catch (e) {
    out.fatal = String(e && e.stack || e);
    out.stderr = stderr.slice(-2000);
  }
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(out) + "\n");
  try { await Promise.race([send("Browser.close"), sleep(2000)]); } catch (e) { /* closing */ }
  cleanup();
  process.exit(out.fatal ? 2 : 0);
})();
