// The graphile-worker task of the delivery benchmark's peer: POSTs the job's payload to the
// benchmark's receiver as a Standard Webhooks request (webhook-id, webhook-timestamp and an
// HMAC-SHA256 webhook-signature), as a service would write it on graphile-worker. A non-2xx
// answer throws, so graphile-worker retries it with its own backoff.
const crypto = require("node:crypto");
const http = require("node:http");

const url = new URL(process.env.BENCH_RECEIVER_URL);
const secret = Buffer.from(process.env.BENCH_SIGNING_SECRET.replace(/^whsec_/, ""), "base64");
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(process.env.BENCH_JOBS || 32) });

module.exports = async (payload, helpers) => {
  const body = JSON.stringify(payload);
  const id = `msg_graphile_${helpers.job.id}`;
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const signature = crypto.createHmac("sha256", secret).update(`${id}.${timestamp}.${body}`).digest("base64");
  const status = await new Promise((resolve, reject) => {
    const request = http.request(url, {
      method: "POST",
      agent,
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        "webhook-id": id,
        "webhook-timestamp": timestamp,
        "webhook-signature": `v1,${signature}`,
      },
    }, (response) => {
      response.resume();
      response.on("end", () => resolve(response.statusCode));
    });
    request.on("error", reject);
    request.end(body);
  });
  if (status < 200 || status >= 300) {
    throw new Error(`receiver answered ${status}`);
  }
};
