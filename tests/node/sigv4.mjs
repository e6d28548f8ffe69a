// Signs requests with the AWS SDK's own SigV4 signer, so that the storage
// tests can compare CloudFlux's signatures with an independent
// implementation. Input (argv[2], JSON): a list of
//   {method, host, path, query: {name: value}, headers: {name: value},
//    payloadSha256, time, accessKeyId, secretAccessKey, region}
// Output: a JSON list of Authorization header values, in order.
import { SignatureV4 } from "@smithy/signature-v4";
import { createHash, createHmac } from "node:crypto";

// The SDK's hash interface over node:crypto (HMAC when given a secret).
class Sha256 {
  constructor(secret) {
    this.h = secret ? createHmac("sha256", Buffer.from(secret)) : createHash("sha256");
  }
  update(data) {
    this.h.update(typeof data === "string" ? Buffer.from(data) : Buffer.from(data));
  }
  async digest() {
    return new Uint8Array(this.h.digest());
  }
}

const requests = JSON.parse(process.argv[2]);
const out = [];
for (const r of requests) {
  const signer = new SignatureV4({
    service: "s3",
    region: r.region,
    credentials: { accessKeyId: r.accessKeyId, secretAccessKey: r.secretAccessKey },
    sha256: Sha256,
    uriEscapePath: false,  // S3: the path is encoded once, by the caller
    applyChecksum: false,
  });
  const signed = await signer.sign(
    {
      method: r.method,
      protocol: "http:",
      hostname: r.host,
      path: r.path,
      query: r.query,
      headers: { host: r.host, "x-amz-content-sha256": r.payloadSha256, ...r.headers },
    },
    { signingDate: new Date(r.time) },
  );
  out.push(signed.headers.authorization ?? signed.headers.Authorization);
}
console.log(JSON.stringify(out));
