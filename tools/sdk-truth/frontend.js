// The frontend of the SDK-truth scenario: a Node.js http server instrumented with
// @opentelemetry/sdk-trace-node + @opentelemetry/instrumentation-http (W3C trace context),
// writing every finished span as one JSON line to a file (SimpleSpanProcessor).
//
// GET /shop/<id>: GET backend /api/order/<id>, then for even ids GET backend /api/stock/<id>,
// over one keep-alive http.Agent bound to the frontend's own address (localAddress).
// Answers 500 when a backend call answered 5xx, else 200.
//
// Usage: node frontend.js --ip IP --port PORT --backend IP:PORT --spans FILE
// Prints "READY" once it listens; stops on SIGTERM.
'use strict';

const fs = require('fs');
const { NodeTracerProvider } = require('@opentelemetry/sdk-trace-node');
const { SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { registerInstrumentations } = require('@opentelemetry/instrumentation');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');

function arg(name) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) {
    console.error(`frontend.js: missing --${name}`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const ip = arg('ip');
const port = Number(arg('port'));
const [backendHost, backendPort] = arg('backend').split(':');
const spansFile = arg('spans');

const KINDS = ['INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'];
const STATUS = ['UNSET', 'OK', 'ERROR'];
const ns = (t) => (BigInt(t[0]) * 1000000000n + BigInt(t[1])).toString();

// One JSON line per finished span, written synchronously.
class FileSpanExporter {
  constructor(path) {
    this.fd = fs.openSync(path, 'a');
  }
  export(spans, done) {
    for (const s of spans) {
      const ctx = s.spanContext();
      const parent = s.parentSpanContext;
      const rec = {
        service: 'frontend',
        trace_id: ctx.traceId,
        span_id: ctx.spanId,
        parent_span_id: parent ? parent.spanId : '',
        parent_remote: parent ? Boolean(parent.isRemote) : false,
        name: s.name,
        kind: KINDS[s.kind] || String(s.kind),
        start_ns: ns(s.startTime),
        end_ns: ns(s.endTime),
        status: STATUS[s.status.code] || String(s.status.code),
        status_description: s.status.message || '',
        attributes: s.attributes,
      };
      fs.writeSync(this.fd, JSON.stringify(rec) + '\n');
    }
    done({ code: 0 });
  }
  shutdown() {
    fs.closeSync(this.fd);
    return Promise.resolve();
  }
  forceFlush() {
    return Promise.resolve();
  }
}

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'frontend' }),
  spanProcessors: [new SimpleSpanProcessor(new FileSpanExporter(spansFile))],
});
provider.register();
registerInstrumentations({ instrumentations: [new HttpInstrumentation()] });

// after the instrumentation is registered
const http = require('http');

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function get(path) {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: backendHost, port: Number(backendPort), path, agent, localAddress: ip, timeout: 5000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  const m = /^\/shop\/(\d+)$/.exec(req.url.split('?')[0]);
  if (!m) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('no such page\n');
    return;
  }
  const id = Number(m[1]);
  const statuses = [await get(`/api/order/${id}`)];
  if (id % 2 === 0) {
    statuses.push(await get(`/api/stock/${id}`));
  }
  const failed = statuses.some((s) => s >= 500);
  const body = `shop ${id}: ${statuses.join(',')}\n`;
  res.writeHead(failed ? 500 : 200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`frontend: ${e.message}\n`);
  });
});
server.keepAliveTimeout = 30000;
server.listen(port, ip, () => console.log('READY'));
process.on('SIGTERM', () => process.exit(0));
