// An independent S3 client (the official AWS SDK) for the storage tests:
//   node s3.mjs get <endpoint> <bucket> <key>        -> JSON {size, sha256, storageClass}
//   node s3.mjs put <endpoint> <bucket> <key> <file> [storageClass]
//   node s3.mjs restore-body <endpoint> <bucket> <key> <days> <tier>
//                                                    -> the RestoreObject request the SDK
//                                                       builds: JSON {method, query, body}
//                                                       (it is not sent)
//   node s3.mjs mkbucket <endpoint> <bucket>         (an existing bucket of ours is fine)
//   node s3.mjs uploads <endpoint> <bucket> <key>    -> JSON {uploads}: the key's incomplete
//                                                       multipart uploads
//   node s3.mjs start-upload <endpoint> <bucket> <key>
//                                                    -> a multipart upload with one 5 MiB part,
//                                                       left incomplete: JSON {uploadId}
// Credentials are s3rver's defaults.
import {
  S3Client, GetObjectCommand, PutObjectCommand, RestoreObjectCommand, CreateBucketCommand,
  ListMultipartUploadsCommand, CreateMultipartUploadCommand, UploadPartCommand,
  BucketAlreadyOwnedByYou,
} from "@aws-sdk/client-s3";
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
} else if (cmd === "mkbucket") {
  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (e) {
    if (!(e instanceof BucketAlreadyOwnedByYou)) throw e;
  }
  console.log("{}");
} else if (cmd === "uploads") {
  const out = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
  const uploads = (out.Uploads ?? []).filter((u) => u.Key === key).map((u) => u.UploadId);
  console.log(JSON.stringify({ uploads }));
} else if (cmd === "start-upload") {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  await s3.send(new UploadPartCommand({
    Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.alloc(5 << 20, 7),
  }));
  console.log(JSON.stringify({ uploadId: UploadId }));
} else {
  console.error("usage: s3.mjs get|put|restore-body|mkbucket|uploads|start-upload ...");
  process.exit(2);
}
