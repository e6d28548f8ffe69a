// An independent S3 client (the official AWS SDK) for the storage tests:
//   node s3.mjs get <endpoint> <bucket> <key>        -> JSON {size, sha256, storageClass}
//   node s3.mjs put <endpoint> <bucket> <key> <file> [storageClass]
//   node s3.mjs restore-body <endpoint> <bucket> <key> <days> <tier>
//                                                    -> the RestoreObject request the SDK
//                                                       builds: JSON {method, query, body}
//                                                       (it is not sent)
// Credentials are s3rver's defaults.
import { S3Client, GetObjectCommand, PutObjectCommand, RestoreObjectCommand } from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const [cmd, endpoint, bucket, key, file, storageClass] = process.argv.slice(2);
const s3 = new S3Client({
  endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
});

if (cmd === "get") {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await out.Body.transformToByteArray());
  console.log(JSON.stringify({
    size: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    storageClass: out.StorageClass ?? "",
  }));
} else if (cmd === "put") {
  await s3.send(new PutObjectCommand({
    Bucket: bucket, Key: key, Body: readFileSync(file),
    ...(storageClass ? { StorageClass: storageClass } : {}),
  }));
  console.log("{}");
} else if (cmd === "restore-body") {
  const [days, tier] = [file, storageClass];
  const command = new RestoreObjectCommand({
    Bucket: bucket, Key: key,
    RestoreRequest: { Days: Number(days), GlacierJobParameters: { Tier: tier } },
  });
  // Capture the serialized request and stop before it is sent.
  command.middlewareStack.add((next) => async (args) => {
    const r = args.request;
    console.log(JSON.stringify({ method: r.method, query: r.query, body: String(r.body) }));
    throw new Error("captured");
  }, { step: "build", name: "capture" });
  try { await s3.send(command); } catch (e) { if (e.message !== "captured") throw e; }
} else {
  console.error("usage: s3.mjs get|put|restore-body ...");
  process.exit(2);
}
