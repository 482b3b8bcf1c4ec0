#!/usr/bin/env node
// A Pulse gRPC client in Node.js (@grpc/grpc-js + @grpc/proto-loader), loading the
// repository's proto/pulse/v1/pulse.proto at run time: no generated code, so it sees the
// API exactly as a third-party client would. Used by tests/integration/test_node_client.py.
//
// Usage:
//   node client.js [ADDRESS] [--api-key KEY] [--timeout SECONDS] METHOD JSON [METHOD JSON ...]
//
//   ADDRESS   host:port of the server (plaintext); default $PULSE_GRPC_ADDRESS
//   --api-key sent as the `x-api-key` metadata; default $PULSE_API_KEY (none if unset)
//   --timeout deadline of each call in seconds (default 10)
//   METHOD    a method of pulse.v1.Pulse ("GetRecommendations", or "Pulse.GetRecommendations")
//             or of pulse.v1.Admin ("Admin.ExportUser")
//   JSON      the request message as a JSON object, field names as in the .proto
//
// The calls run one after the other over one channel. Each prints one JSON line on stdout:
//   {"method": "...", "ok": true, "response": {...}}
//   {"method": "...", "ok": false, "code": 16, "name": "UNAUTHENTICATED", "details": "..."}
// Responses keep the .proto field names, include default values, and give enums as
// names and 64-bit integers as strings (as proto3 JSON does).
//
// Exit status: 0 when the calls could be made (whatever their outcome); 2 for a usage
// error (bad arguments, unknown method or field, invalid JSON); 1 for anything else.

'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO = path.resolve(__dirname, '..', '..');
const PROTO_ROOT = path.join(REPO, 'proto');
const PROTO_FILE = 'pulse/v1/pulse.proto';
const SERVICES = ['Pulse', 'Admin'];

class UsageError extends Error {}

const STATUS_NAMES = Object.fromEntries(
  Object.entries(grpc.status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v, k]),
);

function parseArgs(argv) {
  const opts = {
    address: process.env.PULSE_GRPC_ADDRESS || '',
    apiKey: process.env.PULSE_API_KEY,
    timeoutS: 10,
    calls: [],
  };
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--api-key' || arg === '--timeout' || arg === '--address') {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      const value = argv[++i];
      if (arg === '--api-key') opts.apiKey = value;
      else if (arg === '--address') opts.address = value;
      else {
        opts.timeoutS = Number(value);
        if (!(opts.timeoutS > 0)) throw new UsageError(`--timeout must be a positive number, got ${value}`);
      }
    } else if (arg === '-h' || arg === '--help') {
      throw new UsageError('help');
    } else {
      positional.push(arg);
    }
  }
  // An address looks like host:port and is not a method name.
  if (positional.length % 2 === 1) {
    if (!/:\d+$/.test(positional[0])) {
      throw new UsageError(`expected ADDRESS or METHOD JSON pairs, got ${positional[0]}`);
    }
    opts.address = positional.shift();
  }
  if (!opts.address) throw new UsageError('no server address: pass ADDRESS or set PULSE_GRPC_ADDRESS');
  if (positional.length === 0) throw new UsageError('no calls given');
  for (let i = 0; i < positional.length; i += 2) {
    const method = positional[i];
    let request;
    try {
      request = JSON.parse(positional[i + 1]);
    } catch (err) {
      throw new UsageError(`the request of ${method} is not valid JSON: ${err.message}`);
    }
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      throw new UsageError(`the request of ${method} must be a JSON object`);
    }
    opts.calls.push({ method, request });
  }
  return opts;
}

function loadApi() {
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto (user_id, not userId)
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return { definition, pkg: grpc.loadPackageDefinition(definition).pulse.v1 };
}

function resolveMethod(api, name) {
  const [service, method] = name.includes('.') ? name.split('.', 2) : ['Pulse', name];
  if (!SERVICES.includes(service)) throw new UsageError(`unknown service ${service}; services: ${SERVICES.join(', ')}`);
  const serviceDef = api.definition[`pulse.v1.${service}`];
  const methodDef = serviceDef[method];
  if (!methodDef) {
    throw new UsageError(`unknown method ${service}.${method}; methods: ${Object.keys(serviceDef).join(', ')}`);
  }
  return { service, method, methodDef };
}

function checkFields(name, methodDef, request) {
  // proto-loader ignores unknown fields; refuse them so a typo cannot pass unnoticed.
  const known = new Set(methodDef.requestType.type.field.map((f) => f.name));
  const unknown = Object.keys(request).filter((k) => !known.has(k));
  if (unknown.length) {
    throw new UsageError(`${name}: unknown request field(s) ${unknown.join(', ')}; fields: ${[...known].join(', ')}`);
  }
}

function call(client, method, request, metadata, timeoutS) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + timeoutS * 1000);
    client[method](request, metadata, { deadline }, (err, response) => {
      if (err) {
        resolve({ ok: false, code: err.code, name: STATUS_NAMES[err.code] || String(err.code), details: err.details });
      } else {
        resolve({ ok: true, response });
      }
    });
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const api = loadApi();
  const resolved = opts.calls.map(({ method, request }) => {
    const r = resolveMethod(api, method);
    checkFields(`${r.service}.${r.method}`, r.methodDef, request);
    return { ...r, request };
  });
  const credentials = grpc.credentials.createInsecure();
  const clients = {};
  const metadata = new grpc.Metadata();
  if (opts.apiKey !== undefined && opts.apiKey !== '') metadata.set('x-api-key', opts.apiKey);
  try {
    for (const { service, method, request } of resolved) {
      if (!clients[service]) {
        // One channel for every service: grpc-js shares subchannels between clients.
        clients[service] = new api.pkg[service](opts.address, credentials);
      }
      const result = await call(clients[service], method, request, metadata, opts.timeoutS);
      process.stdout.write(`${JSON.stringify({ method: `${service}.${method}`, ...result })}\n`);
    }
  } finally {
    for (const client of Object.values(clients)) client.close();
  }
}

main().then(
  () => { process.exitCode = 0; },
  (err) => {
    if (err instanceof UsageError) {
      if (err.message !== 'help') process.stderr.write(`client.js: ${err.message}\n`);
      process.stderr.write('usage: node client.js [ADDRESS] [--api-key KEY] [--timeout SECONDS] '
        + 'METHOD JSON [METHOD JSON ...]\n');
      process.exitCode = err.message === 'help' ? 0 : 2;
    } else {
      process.stderr.write(`client.js: ${err && err.stack ? err.stack : err}\n`);
      process.exitCode = 1;
    }
  },
);
