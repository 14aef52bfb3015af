// A Cosmos DB REST server on loopback for the store contract tests:
// @vercel/cosmosdb-server (pinned in package.json), over HTTPS, with the
// fixes azure_data_cosmos 1.1.0-beta.1 needs (found and listed in the
// project's Cosmos notes):
//   1. partition key range ids come back as the number 0; the SDK wants "0";
//   2. reading a missing document answers 500, not 404;
//   3. batch read/replace/delete ignore the batch's partition key header;
//   4. a query sent to a partition key range (how this SDK runs a query
//      across partitions) is refused unless it names a partition key.
// Known and left alone (tests stay off them): no batch rollback, no
// OFFSET/LIMIT, no change-feed resume, no TTL expiry, RU charge always 1.
//
// Usage: node server.js [port]   (0 or absent: any free port). Prints
// "listening <port>" once ready; exits when stdin closes, so a test that
// spawned it never leaves it behind.
"use strict";

const lib = "@vercel/cosmosdb-server/lib";
// The route table copies each handler when it loads: patch them first.
const readDocument = require(`${lib}/handler/read-document`);
const batchDocuments = require(`${lib}/handler/batch-documents`);
const partitionKeyRanges = require(`${lib}/handler/read-partition-key-ranges`);

const originalRead = readDocument.default;
readDocument.default = (account, req, res, params) => {
  try {
    return originalRead(account, req, res, params);
  } catch (err) {
    if (err instanceof TypeError) {
      res.statusCode = 404;
      return {
        code: "NotFound",
        message: "Entity with the specified id does not exist in the system.",
      };
    }
    throw err;
  }
};

const originalBatch = batchDocuments.default;
batchDocuments.default = (account, req, res, params) => {
  const header = req.headers["x-ms-documentdb-partitionkey"];
  const json = require(`${lib}/json`).default;
  // The batch body is read once; parse it here and hand the original
  // handler a request whose body already carries each operation's key.
  return json(req).then((ops) => {
    if (Array.isArray(ops)) {
      for (const op of ops) {
        if (op && op.partitionKey === undefined) op.partitionKey = header;
      }
    }
    const patched = Object.create(req);
    patched.headers = req.headers;
    return originalBatch(account, withBody(patched, ops), res, params);
  });
};

// json() reads the stream; give the original handler a stream-like body.
function withBody(req, body) {
  const { Readable } = require("stream");
  const stream = Readable.from([Buffer.from(JSON.stringify(body))]);
  stream.headers = req.headers;
  stream.method = req.method;
  stream.url = req.url;
  return stream;
}

const queryDocuments = require(`${lib}/handler/query-documents`);
const originalQuery = queryDocuments.default;
queryDocuments.default = (account, req, res, params) => {
  const h = req.headers;
  if (h["x-ms-documentdb-partitionkeyrangeid"] && !h["x-ms-documentdb-partitionkey"]) {
    h["x-ms-documentdb-query-enablecrosspartition"] = "true";
  }
  return originalQuery(account, req, res, params);
};

const originalRanges = partitionKeyRanges.default;
partitionKeyRanges.default = async (account, req, res, params) => {
  const body = await originalRanges(account, req, res, params);
  if (body && Array.isArray(body.PartitionKeyRanges)) {
    for (const range of body.PartitionKeyRanges) range.id = String(range.id);
  }
  return body;
};

const { createHttpsServer } = require(lib);
const port = Number(process.argv[2] || 0);
const server = createHttpsServer().listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
