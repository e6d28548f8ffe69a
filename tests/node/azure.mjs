// An independent Azure Blob client (the official SDK) for the storage tests,
// against azurite's well-known development account:
//   node azure.mjs mkcontainer <blobEndpoint> <container>
//   node azure.mjs get <blobEndpoint> <container> <blob>  -> JSON {size, sha256, accessTier}
//   node azure.mjs put <blobEndpoint> <container> <blob> <file> [tier]
// <blobEndpoint> is http://host:port/devstoreaccount1.
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

export const ACCOUNT = "devstoreaccount1";
export const KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const [cmd, endpoint, container, blob, file, tier] = process.argv.slice(2);
const service = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(ACCOUNT, KEY));
const containerClient = service.getContainerClient(container);

if (cmd === "mkcontainer") {
  await containerClient.createIfNotExists();
  console.log("{}");
} else if (cmd === "get") {
  const client = containerClient.getBlockBlobClient(blob);
  const props = await client.getProperties();
  const bytes = await client.downloadToBuffer();
  console.log(JSON.stringify({
    size: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    accessTier: props.accessTier ?? "",
  }));
} else if (cmd === "put") {
  const client = containerClient.getBlockBlobClient(blob);
  // Small blocks, so that the SDK commits a block list like large uploads do.
  await client.uploadData(readFileSync(file), {
    blockSize: 4 * 1024 * 1024, maxSingleShotSize: 4 * 1024 * 1024,
    ...(tier ? { tier } : {}),
  });
  console.log("{}");
} else {
  console.error("usage: azure.mjs mkcontainer|get|put ...");
  process.exit(2);
}
