// Verifies webhook requests with the Standard Webhooks reference library, independently of the
// C# signer under test (tests/TriggerEvents.Worker.Tests/SignatureTests.cs runs it).
//
//   node verify.mjs SECRET...  < requests.json
//
// stdin: a JSON array of {"id", "timestamp", "signature", "body"} where id, timestamp and signature
// are the webhook-id, webhook-timestamp and webhook-signature headers as received and body is the
// base64 of the exact body bytes. stdout: one JSON array, per request {"id", "results"}, results
// holding per secret (in argument order) true, or the library's error message.
// Exit codes: 0 ran, 2 bad usage, 3 the library is not installed (run `npm ci` here).

let Webhook;
try {
  ({ Webhook } = await import("standardwebhooks"));
} catch (e) {
  process.stderr.write(`verify.mjs: cannot load the 'standardwebhooks' package (${e.message}); run 'npm ci' in tests/receivers\n`);
  process.exit(3);
}

const secrets = process.argv.slice(2);
if (secrets.length === 0) {
  process.stderr.write("usage: node verify.mjs SECRET... < requests.json\n");
  process.exit(2);
}

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}

let requests;
try {
  requests = JSON.parse(Buffer.concat(chunks).toString("utf8"));
} catch (e) {
  process.stderr.write(`verify.mjs: stdin is not JSON: ${e.message}\n`);
  process.exit(2);
}

if (!Array.isArray(requests)) {
  process.stderr.write("verify.mjs: stdin must be a JSON array of requests\n");
  process.exit(2);
}

const webhooks = secrets.map((secret) => new Webhook(secret));
const output = requests.map((request) => {
  const payload = Buffer.from(request.body, "base64");
  const headers = {
    "webhook-id": request.id,
    "webhook-timestamp": request.timestamp,
    "webhook-signature": request.signature,
  };
  const results = webhooks.map((webhook) => {
    try {
      webhook.verify(payload, headers);
      return true;
    } catch (e) {
      return e.message;
    }
  });
  return { id: request.id, results };
});

process.stdout.write(JSON.stringify(output) + "\n");
