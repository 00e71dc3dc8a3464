// Posts events to a HEC with the official npm client `splunk-logging` (an independent
// sender), to prove tools/receivers/hec.py speaks HEC before it judges podtrace.
// Usage: node splunk_logging_send.js <url> <token> <count> [--insecure]
// Prints one JSON line per send: {"ok": bool, "status": code, "body": answer}.
const SplunkLogger = require("splunk-logging").Logger;

const [url, token, countArg] = process.argv.slice(2);
const count = parseInt(countArg || "1", 10);
const logger = new SplunkLogger({ token, url, maxRetries: 0 });
logger.requestOptions.strictSSL = !process.argv.includes("--insecure");
logger.error = (err, context) => {
  console.log(JSON.stringify({ ok: false, error: String(err && err.message), context: String(context && context.message) }));
};

let done = 0;
for (let i = 0; i < count; i++) {
  const payload = {
    message: { kind: "npm-splunk-logging", seq: i },
    metadata: { source: "splunk-logging", sourcetype: "npm:test", host: "npm-client" },
    severity: "info",
  };
  logger.send(payload, (err, resp, body) => {
    const status = resp ? resp.statusCode : null;
    console.log(JSON.stringify({ ok: !err && status === 200, status, body: typeof body === "string" ? body : JSON.stringify(body), error: err ? String(err.message) : null }));
    done += 1;
    if (done === count) process.exit(0);
  });
}
setTimeout(() => { console.log(JSON.stringify({ ok: false, error: "timeout" })); process.exit(2); }, 10000);
