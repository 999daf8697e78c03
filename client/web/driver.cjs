// Calls a gRPC-Web server with the real JavaScript clients, as a browser page would, and prints
// what each call saw as one JSON line: the npm `grpc-web` client (GrpcWebClientBase with method
// descriptors made at run time, over the `xhr2` XMLHttpRequest), Connect's gRPC-Web transport
// from `@connectrpc/connect-web` (fetch) and `@connectrpc/connect-node` (HTTP/1.1 or HTTP/2).
// Messages are `@bufbuild/protobuf` v2 messages from the testbed's own descriptor sets.
//
// Usage: node driver.cjs PLAN.json, PLAN being
//   { "base": "http://127.0.0.1:PORT", "descriptors": ["a.binpb", ...],
//     "calls": [{ "client": "grpc-web" | "connect-web" | "connect-node-1.1" | "connect-node-2",
//                 "format": "binary" | "text" (grpc-web only), "method": "/pkg.Service/Method",
//                 "request": {JSON}, "headers": {...} }] }
// Each call prints { "ok", "messages": [JSON...], "headers": {...}, "code", "message" }.
// The packages come from NODE_PATH (scripts/setup installs them into .tools).
"use strict";

const fs = require("node:fs");
const { create, fromBinary, toBinary, fromJson, toJson, createFileRegistry } = require("@bufbuild/protobuf");
const { FileDescriptorSetSchema } = require("@bufbuild/protobuf/wkt");

function registry(paths) {
  const files = new Map();
  for (const path of paths) {
    const set = fromBinary(FileDescriptorSetSchema, fs.readFileSync(path));
    for (const file of set.file) files.set(file.name, file);
  }
  return createFileRegistry(create(FileDescriptorSetSchema, { file: [...files.values()] }));
}

function findMethod(reg, path) {
  const [, serviceName, methodName] = path.split("/");
  const service = reg.getService(serviceName);
  if (!service) throw new Error(`no service ${serviceName} in the descriptors`);
  const method = service.methods.find((m) => m.name === methodName);
  if (!method) throw new Error(`no method ${methodName} in ${serviceName}`);
  return { service, method };
}

function plainHeaders(headers) {
  const out = {};
  if (!headers) return out;
  if (typeof headers.get === "function" && typeof headers.forEach === "function") {
    headers.forEach((value, key) => { out[key.toLowerCase()] = value; });
    return out;
  }
  for (const [key, value] of Object.entries(headers)) out[key.toLowerCase()] = String(value);
  return out;
}

// The npm grpc-web client: what `protoc-gen-grpc-web` generates calls these same functions.
function grpcWebCall(base, reg, call) {
  global.XMLHttpRequest = require("xhr2");
  const grpcWeb = require("grpc-web");
  const { method } = findMethod(reg, call.method);
  const streaming = method.methodKind === "server_streaming";
  const descriptor = new grpcWeb.MethodDescriptor(
    call.method,
    streaming ? grpcWeb.MethodType.SERVER_STREAMING : grpcWeb.MethodType.UNARY,
    Object,
    Object,
    (message) => toBinary(method.input, message),
    (bytes) => fromBinary(method.output, bytes),
  );
  const client = new grpcWeb.GrpcWebClientBase({ format: call.format || "text" });
  const request = fromJson(method.input, call.request || {});
  const result = { ok: true, messages: [], headers: {}, code: 0, message: "" };
  return new Promise((resolve) => {
    let stream;
    const finish = (err) => {
      if (err) {
        result.ok = false;
        result.code = err.code;
        result.message = err.message;
        Object.assign(result.headers, plainHeaders(err.metadata));
      }
      resolve(result);
    };
    if (streaming) {
      stream = client.serverStreaming(base + call.method, request, call.headers || {}, descriptor);
      stream.on("data", (reply) => result.messages.push(toJson(method.output, reply)));
      stream.on("error", finish);
      stream.on("end", () => finish(null));
    } else {
      stream = client.rpcCall(base + call.method, request, call.headers || {}, descriptor, (err, reply) => {
        if (!err) result.messages.push(toJson(method.output, reply));
        finish(err);
      });
    }
    stream.on("metadata", (headers) => Object.assign(result.headers, plainHeaders(headers)));
  });
}

// Connect's gRPC-Web transport, from connect-web (fetch, as in a browser) or connect-node.
async function connectCall(base, reg, call) {
  const { createClient, ConnectError } = require("@connectrpc/connect");
  let transport;
  if (call.client === "connect-web") {
    transport = require("@connectrpc/connect-web").createGrpcWebTransport({ baseUrl: base, useBinaryFormat: true });
  } else {
    const httpVersion = call.client === "connect-node-2" ? "2" : "1.1";
    transport = require("@connectrpc/connect-node").createGrpcWebTransport({ baseUrl: base, httpVersion, useBinaryFormat: true });
  }
  const { service, method } = findMethod(reg, call.method);
  const client = createClient(service, transport);
  const result = { ok: true, messages: [], headers: {}, code: 0, message: "" };
  const options = {
    headers: call.headers || {},
    onHeader: (headers) => Object.assign(result.headers, plainHeaders(headers)),
    onTrailer: (trailers) => Object.assign(result.headers, plainHeaders(trailers)),
  };
  const request = fromJson(method.input, call.request || {});
  try {
    if (method.methodKind === "server_streaming") {
      for await (const reply of client[method.localName](request, options)) {
        result.messages.push(toJson(method.output, reply));
      }
    } else {
      result.messages.push(toJson(method.output, await client[method.localName](request, options)));
    }
  } catch (err) {
    const error = ConnectError.from(err);
    result.ok = false;
    result.code = error.code;
    result.message = error.rawMessage;
    Object.assign(result.headers, plainHeaders(error.metadata));
  }
  return result;
}

async function main() {
  const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const reg = registry(plan.descriptors);
  for (const call of plan.calls) {
    let result;
    try {
      result = call.client === "grpc-web"
        ? await grpcWebCall(plan.base, reg, call)
        : await connectCall(plan.base, reg, call);
    } catch (err) {
      result = { ok: false, messages: [], headers: {}, code: -1, message: `driver: ${err && err.stack || err}` };
    }
    process.stdout.write(JSON.stringify(result) + "\n");
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`driver failed: ${err && err.stack || err}\n`);
  process.exit(1);
});
