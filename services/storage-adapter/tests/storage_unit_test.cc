#include <gtest/gtest.h>

#include <fstream>

#include "backends_config.h"
#include "cloud_io.h"
#include "cloudflux/core/digest.h"
#include "http.h"
#include "object_store.h"
#include "pacer.h"
#include "sigv4.h"
#include "tiers.h"
#include "xml.h"

namespace cloudflux::storage {
namespace {

namespace common = cloudflux::common::v1;

// AWS's worked example "GET Object" (Signature Version 4, header form):
// bucket examplebucket, GET /test.txt, Range bytes=0-9, 2013-05-24.
TEST(SigV4, MatchesAwsWorkedExample) {
  SigV4Request r;
  r.method = "GET";
  r.canonical_uri = "/test.txt";
  r.headers = {{"Host", "examplebucket.s3.amazonaws.com"}, {"Range", "bytes=0-9"}};
  r.payload_sha256 = core::Sha256Hex("");
  SignV4(r, {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3"},
         absl::FromCivil(absl::CivilSecond(2013, 5, 24, 0, 0, 0), absl::UTCTimeZone()));
  std::string auth;
  for (const auto& [k, v] : r.headers) {
    if (k == "Authorization") auth = v;
  }
  EXPECT_EQ(auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST(SigV4, CanonicalQuerySortsAndEncodes) {
  EXPECT_EQ(CanonicalQuery({{"uploadId", "a b/c"}, {"partNumber", "2"}, {"uploads", ""}}),
            "partNumber=2&uploadId=a%20b%2Fc&uploads=");
  EXPECT_EQ(UriEncode("dir/a b+c~.txt", true), "dir/a%20b%2Bc~.txt");
  EXPECT_EQ(UriEncode("dir/a", false), "dir%2Fa");
  EXPECT_EQ(UriEncode("/a//b/", true), "/a//b/");
  EXPECT_EQ(UriEncode("\xc3\xa9 \x01", true), "%C3%A9%20%01");
  EXPECT_EQ(UriEncode("", true), "");
}

TEST(Tiers, OneTableBothWays) {
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_HOT), "STANDARD");
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_UNSPECIFIED), "STANDARD");
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_WARM), "STANDARD_IA");
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_COLD), "GLACIER_IR");
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_ARCHIVE), "DEEP_ARCHIVE");
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_AZURE, common::STORAGE_TIER_COLD), "Cold");
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_GCP, common::STORAGE_TIER_WARM), "NEARLINE");
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_GCP, common::STORAGE_TIER_ARCHIVE), "ARCHIVE");
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_LOCAL, common::STORAGE_TIER_COLD), "");
  EXPECT_TRUE(ArchiveNeedsRestore(common::CLOUD_PROVIDER_AWS));
  EXPECT_TRUE(ArchiveNeedsRestore(common::CLOUD_PROVIDER_AZURE));
  EXPECT_FALSE(ArchiveNeedsRestore(common::CLOUD_PROVIDER_GCP));
  EXPECT_FALSE(ArchiveNeedsRestore(common::CLOUD_PROVIDER_LOCAL));
  for (auto provider : {common::CLOUD_PROVIDER_AWS, common::CLOUD_PROVIDER_AZURE, common::CLOUD_PROVIDER_GCP}) {
    for (auto tier : {common::STORAGE_TIER_HOT, common::STORAGE_TIER_WARM, common::STORAGE_TIER_COLD,
                      common::STORAGE_TIER_ARCHIVE}) {
      EXPECT_EQ(TierForStorageClass(provider, StorageClassFor(provider, tier)), tier);
    }
  }
  // ARCHIVE_FLEXIBLE: S3 Glacier Flexible Retrieval; no class on Azure or GCS.
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_ARCHIVE_FLEXIBLE), "GLACIER");
  EXPECT_EQ(TierForStorageClass(common::CLOUD_PROVIDER_AWS, "GLACIER"), common::STORAGE_TIER_ARCHIVE_FLEXIBLE);
  EXPECT_TRUE(CheckTierOn(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_ARCHIVE_FLEXIBLE, "s3").ok());
  EXPECT_TRUE(CheckTierOn(common::CLOUD_PROVIDER_LOCAL, common::STORAGE_TIER_ARCHIVE_FLEXIBLE, "local").ok());
  for (auto provider : {common::CLOUD_PROVIDER_AZURE, common::CLOUD_PROVIDER_GCP}) {
    EXPECT_EQ(CheckTierOn(provider, common::STORAGE_TIER_ARCHIVE_FLEXIBLE, "x").code(),
              absl::StatusCode::kFailedPrecondition);
  }
  EXPECT_EQ(TierForStorageClass(common::CLOUD_PROVIDER_AWS, "REDUCED_REDUNDANCY"), std::nullopt);
  // AUTO: S3 Intelligent-Tiering; a label on local disk; no class on Azure or GCS.
  EXPECT_EQ(StorageClassFor(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_AUTO), "INTELLIGENT_TIERING");
  EXPECT_EQ(TierForStorageClass(common::CLOUD_PROVIDER_AWS, "INTELLIGENT_TIERING"), common::STORAGE_TIER_AUTO);
  EXPECT_TRUE(CheckTierOn(common::CLOUD_PROVIDER_AWS, common::STORAGE_TIER_AUTO, "s3").ok());
  EXPECT_TRUE(CheckTierOn(common::CLOUD_PROVIDER_LOCAL, common::STORAGE_TIER_AUTO, "local").ok());
  EXPECT_EQ(CheckTierOn(common::CLOUD_PROVIDER_AZURE, common::STORAGE_TIER_AUTO, "az").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CheckTierOn(common::CLOUD_PROVIDER_GCP, common::STORAGE_TIER_AUTO, "gcs").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(CheckTierOn(common::CLOUD_PROVIDER_GCP, common::STORAGE_TIER_COLD, "gcs").ok());
}

TEST(Xml, ReadsElementsAndEscapes) {
  std::string doc =
      "<?xml version=\"1.0\"?><InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
      "<Bucket>b</Bucket><UploadId>abc&amp;1</UploadId></InitiateMultipartUploadResult>";
  EXPECT_EQ(XmlFirstText(doc, "UploadId"), "abc&1");
  EXPECT_EQ(XmlFirstText(doc, "Missing"), std::nullopt);
  EXPECT_EQ(XmlFirstText("not xml <", "UploadId"), std::nullopt);
  EXPECT_EQ(XmlEscape("\"a\"<&>"), "&quot;a&quot;&lt;&amp;&gt;");
}

TEST(Endpoint, ParsesOnlySchemeHostPort) {
  auto u = ParseEndpoint("http://127.0.0.1:4568/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "127.0.0.1:4568");
  EXPECT_FALSE(ParseEndpoint("127.0.0.1:4568").ok());
  EXPECT_FALSE(ParseEndpoint("ftp://x").ok());
  EXPECT_FALSE(ParseEndpoint("http://x/path").ok());
}

// The Shared Key string-to-sign as the Blob service documents it: twelve
// standard header lines (Content-Length empty for 0), the x-ms- headers
// lowercased and sorted, then /account/path and the decoded query sorted.
TEST(SharedKey, StringToSignFollowsTheBlobServiceRules) {
  std::string s = SharedKeyStringToSign(
      "PUT", "myaccount", "/myaccount/photos/objects/a%20b",
      {{"comp", "block"}, {"blockid", "YmxvY2stMDAwMDAwMDE="}},
      {{"X-MS-Version", "2021-12-02"}, {"x-ms-date", "Sun, 22 Nov 2026 10:00:00 GMT"},
       {"Content-Type", "application/xml"}, {"x-ms-access-tier", " Cool "}},
      1234);
  EXPECT_EQ(s,
            "PUT\n\n\n1234\n\napplication/xml\n\n\n\n\n\n\n"
            "x-ms-access-tier:Cool\nx-ms-date:Sun, 22 Nov 2026 10:00:00 GMT\nx-ms-version:2021-12-02\n"
            "/myaccount/myaccount/photos/objects/a%20b\nblockid:YmxvY2stMDAwMDAwMDE=\ncomp:block");
  std::string head = SharedKeyStringToSign("HEAD", "acct", "/c", {{"restype", "container"}}, {}, 0);
  EXPECT_EQ(head, "HEAD\n\n\n\n\n\n\n\n\n\n\n\n/acct/c\nrestype:container");
}

TEST(BackendsConfig, ClearErrorsForBadConfigurations) {
  auto make = [](const std::string& json) -> absl::Status {
    std::string path = ::testing::TempDir() + "/backends.json";
    std::ofstream(path) << json;
    auto config = ReadBackendsConfig(path);
    if (!config.ok()) return config.status();
    return MakeBackends(*config).status();
  };
  EXPECT_TRUE(make(R"({"backends": [{"name": "s3-a", "kind": "s3", "endpoint": "http://127.0.0.1:1",
                      "bucket": "b", "accessKeyId": "k", "secretAccessKey": "s"}]})")
                  .ok());
  auto s = make(R"({"backends": [{"name": "x", "kind": "ftp"}]})");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("unknown kind 'ftp'"), std::string::npos) << s;
  s = make(R"({"backends": [{"name": "Bad Name", "kind": "s3"}]})");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = make(R"({"backends": [{"name": "a", "kind": "s3", "bucket": "b", "endpoint": "http://h"}]})");
  EXPECT_NE(s.message().find("access key id and secret are required"), std::string::npos) << s;
  s = make(R"({"backends": [{"name": "a", "kind": "s3", "bucket": "b", "endpoint": "http://h",
               "accessKeyId": "k", "secretAccessKey": "TOPSECRET", "partSize": 1024}]})");
  EXPECT_NE(s.message().find("at least 5 MiB"), std::string::npos) << s;
  EXPECT_EQ(s.message().find("TOPSECRET"), std::string::npos) << "secrets never in messages";
  s = make(R"({"backends": [{"name": "a", "kind": "s3"}, {"name": "a", "kind": "s3"}]})");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(make(R"({"backends": [{"name": "a", "kind": 7}]})").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(make("{not json").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(make(R"({"backends": [{"name": "az", "kind": "azure", "accessKeyId": "acct",
                      "secretAccessKey": "a2V5", "bucket": "photos"}]})")
                  .ok());
  s = make(R"({"backends": [{"name": "az", "kind": "azure", "accessKeyId": "acct",
               "secretAccessKey": "SECRET!!", "bucket": "photos"}]})");
  EXPECT_NE(s.message().find("account key must be base64"), std::string::npos) << s;
  EXPECT_EQ(s.message().find("SECRET"), std::string::npos) << "secrets never in messages";
  s = make(R"({"backends": [{"name": "az", "kind": "azure", "accessKeyId": "acct",
               "secretAccessKey": "a2V5", "bucket": "x"}]})");
  EXPECT_NE(s.message().find("container must be"), std::string::npos) << s;

  // The service's own "local" backend is one of them: a file cannot reuse the name.
  std::string path = ::testing::TempDir() + "/backends-local.json";
  std::ofstream(path) << R"({"backends": [{"name": "local", "kind": "local", "root": "/tmp/x"}]})";
  auto loaded = LoadBackends(::testing::TempDir() + "/local-data", path);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("'local' is configured twice"), std::string::npos)
      << loaded.status();
  loaded = LoadBackends(::testing::TempDir() + "/local-data", "");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->count("local"), 1u);
  EXPECT_EQ(LoadBackends(::testing::TempDir() + "/local-data", "/no/such/file").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(StoreError, RestAnswersBecomeClearStatuses) {
  auto answer = [](long status, const std::string& code, bool in_header = false) {
    HttpResponse r;
    r.status = status;
    if (in_header) {
      r.headers["x-ms-error-code"] = code;
    } else if (!code.empty()) {
      r.body = "<?xml version=\"1.0\"?><Error><Code>" + code + "</Code><Message>m</Message></Error>";
    }
    return StoreError("s3", r, "get k");
  };
  EXPECT_EQ(answer(404, "NoSuchKey").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(answer(403, "AccessDenied").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(answer(416, "InvalidRange").code(), absl::StatusCode::kOutOfRange);
  // Throttled: slow down, do not give up on the store.
  EXPECT_EQ(answer(503, "SlowDown").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(answer(503, "ServerBusy", true).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(answer(429, "").code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(answer(503, "ServiceUnavailable").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(answer(500, "InternalError").code(), absl::StatusCode::kUnavailable);
  // Archived objects read before a restore: S3/GCS 403, Azure 409 (header only on HEAD).
  for (const absl::Status& s :
       {answer(403, "InvalidObjectState"), answer(409, "BlobArchived"), answer(409, "BlobArchived", true)}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("archived"), absl::string_view::npos) << s;
  }
  EXPECT_NE(answer(403, "AccessDenied").message().find("AccessDenied"), absl::string_view::npos);
  // A server that does not implement the request.
  EXPECT_EQ(answer(405, "MethodNotAllowed").code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(answer(501, "NotImplemented").code(), absl::StatusCode::kUnimplemented);
}

TEST(Xml, RecordsOfAListAnswer) {
  // ListMultipartUploads as the S3 API reference shows it.
  const std::string list = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>bucket</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>my-movie.m2ts</NextKeyMarker><MaxUploads>3</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>my-divisor</Key><UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
    <Initiator><ID>arn:aws:iam::111122223333:user/user1</ID><DisplayName>u</DisplayName></Initiator>
    <StorageClass>STANDARD</StorageClass><Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
  <Upload><Key>my-movie.m2ts</Key><UploadId>VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId></Upload>
  <Upload><Key>k&amp;1</Key></Upload>
</ListMultipartUploadsResult>)";
  auto uploads = XmlRecords(list, "Upload", {"Key", "UploadId"});
  ASSERT_EQ(uploads.size(), 3u);
  EXPECT_EQ(uploads[0].at("Key"), "my-divisor");
  EXPECT_EQ(uploads[0].at("UploadId"), "XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw");
  EXPECT_EQ(uploads[1].at("Key"), "my-movie.m2ts");
  EXPECT_EQ(uploads[2].at("Key"), "k&1");
  EXPECT_EQ(uploads[2].at("UploadId"), "") << "a field it lacks is empty";
  EXPECT_TRUE(XmlRecords("not xml", "Upload", {"Key"}).empty());
  EXPECT_TRUE(XmlRecords("<a><b/></a>", "Upload", {"Key"}).empty());
}

TEST(PartCutter, KeepsEverythingUpToTheThresholdForOneRequest) {
  PartCutter cutter(/*threshold=*/10, /*part_size=*/4);
  int submitted = 0;
  auto submit = [&](std::string) {
    ++submitted;
    return absl::OkStatus();
  };
  for (std::string_view piece : {"abc", "def", "ghi", "j"}) ASSERT_TRUE(cutter.Append(piece, submit).ok());
  EXPECT_FALSE(cutter.cut());
  EXPECT_EQ(submitted, 0);
  EXPECT_EQ(cutter.TakeRest(), "abcdefghij");
  EXPECT_EQ(cutter.TakeRest(), "");
}

TEST(PartCutter, PastTheThresholdHandsOnEveryFullPartInOrder) {
  PartCutter cutter(/*threshold=*/10, /*part_size=*/4);
  std::vector<std::string> parts;
  auto submit = [&](std::string part) {
    parts.push_back(std::move(part));
    return absl::OkStatus();
  };
  ASSERT_TRUE(cutter.Append("abcdefghij", submit).ok());
  EXPECT_TRUE(parts.empty());
  ASSERT_TRUE(cutter.Append("k", submit).ok());  // 11 > 10: cut
  EXPECT_TRUE(cutter.cut());
  EXPECT_EQ(parts, (std::vector<std::string>{"abcd", "efgh"}));
  ASSERT_TRUE(cutter.Append("lmnopqrstuvwxyz", submit).ok());  // one write over several parts
  EXPECT_EQ(parts, (std::vector<std::string>{"abcd", "efgh", "ijkl", "mnop", "qrst", "uvwx"}));
  EXPECT_EQ(cutter.TakeRest(), "yz");
  ASSERT_TRUE(cutter.Append("0123", submit).ok());  // still cut: a full part goes at once
  EXPECT_EQ(parts.back(), "0123");
  EXPECT_EQ(cutter.TakeRest(), "");
}

TEST(PartCutter, NoPartTakesMoreMemoryThanAPart) {
  // Odd-sized writes: std::string's own growth would double a part's
  // capacity past the part size.
  PartCutter cutter(/*threshold=*/100, /*part_size=*/64);
  std::vector<std::string> parts;
  auto submit = [&](std::string part) {
    EXPECT_EQ(part.size(), 64u);
    EXPECT_LE(part.capacity(), 64u) << "part " << parts.size();
    parts.push_back(std::move(part));
    return absl::OkStatus();
  };
  const std::string piece = "0123456";
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(cutter.Append(piece, submit).ok());
  EXPECT_EQ(parts.size(), 700u / 64);
  std::string all;
  for (const std::string& part : parts) all += part;
  all += cutter.TakeRest();
  std::string expected;
  for (int i = 0; i < 100; ++i) expected += piece;
  EXPECT_EQ(all, expected);
}

TEST(PartCutter, PartsFillTheBuffersSentPartsGaveBack) {
  // Warm memory instead of fresh pages for every part of a large upload.
  constexpr int64_t kPart = 1 << 20;
  PartCutter cutter(/*threshold=*/kPart, /*part_size=*/kPart);
  std::vector<const char*> sent;
  auto submit = [&](std::string part) {
    sent.push_back(part.data());
    RecycleBody(std::move(part));  // as the stores do once a part is sent
    return absl::OkStatus();
  };
  const std::string mib(kPart, 'x');
  ASSERT_TRUE(cutter.Append(mib + "y", submit).ok());  // part 2 begins; cut: part 1 goes back
  ASSERT_TRUE(cutter.Append(mib, submit).ok());        // part 3 begins, part 2 goes
  ASSERT_TRUE(cutter.Append(mib, submit).ok());        // part 3 goes
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[2], sent[0]) << "part 3 did not fill the buffer part 1 gave back";
}

TEST(PartCutter, StopsAtTheFirstFailedPart) {
  PartCutter cutter(/*threshold=*/4, /*part_size=*/4);
  std::vector<std::string> parts;
  auto submit = [&](std::string part) {
    parts.push_back(std::move(part));
    return parts.size() == 2 ? absl::UnavailableError("part 2") : absl::OkStatus();
  };
  absl::Status s = cutter.Append("abcdefghijklm", submit);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(parts, (std::vector<std::string>{"abcd", "efgh"}));
}

TEST(S3CopyPart, EtagOrTheErrorTheAnswerCarries) {
  auto answer = [](long status, const std::string& body) {
    HttpResponse r;
    r.status = status;
    r.body = body;
    return CopyPartEtag("s3", r, "copy part 1");
  };
  auto etag = answer(200, R"(<CopyPartResult><LastModified>2011-04-11T20:34:56.000Z</LastModified>)"
                          R"(<ETag>"9b2cf535f27731c974343645a3985328"</ETag></CopyPartResult>)");
  ASSERT_TRUE(etag.ok()) << etag.status();
  EXPECT_EQ(*etag, "\"9b2cf535f27731c974343645a3985328\"");
  // 200 with an error in the body (S3 does this for long copies).
  EXPECT_EQ(answer(200, "<Error><Code>InternalError</Code><Message>m</Message></Error>").status().code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(answer(404, "<Error><Code>NoSuchUpload</Code></Error>").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(answer(501, "<Error><Code>NotImplemented</Code></Error>").status().code(),
            absl::StatusCode::kUnimplemented);
}

TEST(AzureRestore, PropertiesSayWhetherABlobNeedsOrIsInARehydration) {
  using State = ReadState::State;
  HttpResponse head;
  head.status = 200;
  head.headers["x-ms-access-tier"] = "Hot";
  EXPECT_EQ(AzureReadState(head).state, State::kReadable);
  head.headers["x-ms-access-tier"] = "Archive";
  EXPECT_EQ(AzureReadState(head).state, State::kNeedsRestore);
  head.headers["x-ms-access-tier"] = "Hot";
  head.headers["x-ms-archive-status"] = "rehydrate-pending-to-hot";
  EXPECT_EQ(AzureReadState(head).state, State::kRestoring);
  head.headers["x-ms-access-tier"] = "Archive";  // Azure reports the old tier until done
  head.headers["x-ms-archive-status"] = "rehydrate-pending-to-cool";
  EXPECT_EQ(AzureReadState(head).state, State::kRestoring);
}

// The header forms of the S3 API reference (HeadObject: x-amz-restore,
// x-amz-storage-class, x-amz-archive-status).
TEST(S3Restore, HeadSaysWhetherAnArchivedObjectNeedsIsInOrHasARestore) {
  using State = ReadState::State;
  HttpResponse head;
  head.status = 200;
  EXPECT_EQ(S3ReadState(head).state, State::kReadable);  // STANDARD: no class header
  head.headers["x-amz-storage-class"] = "GLACIER_IR";
  EXPECT_EQ(S3ReadState(head).state, State::kReadable);
  for (const char* cls : {"GLACIER", "DEEP_ARCHIVE"}) {
    head.headers["x-amz-storage-class"] = cls;
    head.headers.erase("x-amz-restore");
    EXPECT_EQ(S3ReadState(head).state, State::kNeedsRestore) << cls;
    head.headers["x-amz-restore"] = "ongoing-request=\"true\"";
    EXPECT_EQ(S3ReadState(head).state, State::kRestoring) << cls;
    head.headers["x-amz-restore"] = "ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"";
    ReadState done = S3ReadState(head);
    EXPECT_EQ(done.state, State::kReadable) << cls;
    ASSERT_TRUE(done.readable_until.has_value()) << cls;
    EXPECT_EQ(absl::FormatTime("%Y-%m-%d %H:%M:%S", *done.readable_until, absl::UTCTimeZone()),
              "2012-12-21 00:00:00");
  }
  head.headers.clear();
  head.headers["x-amz-storage-class"] = "INTELLIGENT_TIERING";
  EXPECT_EQ(S3ReadState(head).state, State::kReadable);
  head.headers["x-amz-archive-status"] = "DEEP_ARCHIVE_ACCESS";
  EXPECT_EQ(S3ReadState(head).state, State::kNeedsRestore);
  head.headers["x-amz-restore"] = "ongoing-request=\"true\"";
  EXPECT_EQ(S3ReadState(head).state, State::kRestoring);
}

TEST(S3Restore, AnswersMeanStartedReadableInProgressOrAnError) {
  auto answer = [](long status, const std::string& code) {
    HttpResponse r;
    r.status = status;
    if (!code.empty()) r.body = "<Error><Code>" + code + "</Code><Message>m</Message></Error>";
    return S3RestoreAnswer("s3", r, "objects/k");
  };
  using State = RestoreResult::State;
  EXPECT_EQ(answer(202, "")->state, State::kStarted);
  EXPECT_EQ(answer(200, "")->state, State::kReadable);
  EXPECT_EQ(answer(409, "RestoreAlreadyInProgress")->state, State::kInProgress);
  EXPECT_FALSE(answer(202, "")->tier_changed) << "S3 restores a copy; the class stays";
  // Not an archived class (S3 answers 403 InvalidObjectState).
  EXPECT_EQ(answer(403, "InvalidObjectState").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(answer(404, "NoSuchKey").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(answer(409, "OperationAborted").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(S3RestoreBody({.days = 2, .priority = RestoreOptions::Priority::kHigh}),
            "<RestoreRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Days>2</Days>"
            "<GlacierJobParameters><Tier>Expedited</Tier></GlacierJobParameters></RestoreRequest>");
}

}  // namespace
}  // namespace cloudflux::storage

namespace cloudflux::storage {
namespace {

// Sends `chunks` chunks of `bytes` through `m` as fast as the schedule
// allows, on a simulated clock from `now`; returns when the last may go.
absl::Time Drain(CopyPacers::Member& m, absl::Time now, int chunks, int64_t bytes) {
  for (int i = 0; i < chunks; ++i) {
    m.Reserve(bytes, now);
    now += m.Wait(now);
  }
  return now;
}

const absl::Time t0 = absl::FromUnixSeconds(1000);

TEST(CopyPacers, AloneACopyKeepsItsRateAndBanksLittle) {
  CopyPacers pacers;
  auto alone = pacers.Join("", 1'000'000, t0);
  // 10 MB at 1 MB/s: 10 s.
  const absl::Time end = Drain(*alone, t0, 10, 1'000'000);
  EXPECT_EQ(end - t0, absl::Seconds(10));
  // After a stall of 30 s it catches up by the credit only.
  const absl::Time later = end + absl::Seconds(30);
  alone->Reserve(1'000'000, later);
  EXPECT_EQ(alone->Wait(later), absl::Seconds(1) - CopyPacers::kCredit);
  EXPECT_EQ(pacers.Members(""), 0);
}

TEST(CopyPacers, AGroupSharesTheSumAndFollowsItsMembers) {
  CopyPacers pacers;
  auto a = pacers.Join("job", 1'000'000, t0);
  auto b = pacers.Join("job", 1'000'000, t0);
  EXPECT_EQ(pacers.Members("job"), 2);
  // b is held up: a alone may send the group's 2 MB/s, 10 MB in 5 s.
  absl::Time now = Drain(*a, t0, 10, 1'000'000);
  EXPECT_EQ(now - t0, absl::Seconds(5));
  // Both sending in turn: together still 2 MB/s.
  for (int i = 0; i < 10; ++i) {
    auto& m = i % 2 == 0 ? *a : *b;
    m.Reserve(1'000'000, now);
    now += m.Wait(now);
  }
  EXPECT_EQ(now - t0, absl::Seconds(10));
  // A member waiting on the group's rate goes sooner when a member joins
  // (a third copy, with a new share: 3 x 1.5 MB/s).
  a->Reserve(5'000'000, now);
  EXPECT_EQ(a->Wait(now), absl::Seconds(2.5));
  auto c = pacers.Join("job", 1'500'000, now + absl::Seconds(0.25));
  EXPECT_EQ(a->Wait(now + absl::Seconds(0.25)), absl::Seconds(1));
  c.reset();
  b.reset();
  EXPECT_EQ(pacers.Members("job"), 1);
  // Another group is not affected.
  auto other = pacers.Join("other", 4'000'000, now);
  other->Reserve(4'000'000, now);
  EXPECT_EQ(other->Wait(now), absl::Seconds(1));
  a.reset();
  EXPECT_EQ(pacers.Members("job"), 0);
}

TEST(CopyPacers, ALeaversShareLingersUntilANewcomerTakesIt) {
  CopyPacers pacers;
  auto a = pacers.Join("job", 1'000'000, t0);
  auto b = pacers.Join("job", 1'000'000, t0);
  b->Leave(t0);
  EXPECT_EQ(pacers.Members("job"), 1);
  a->Reserve(2'000'000, t0);
  EXPECT_EQ(a->Wait(t0), absl::Seconds(1)) << "b's share still counts";
  const absl::Time t1 = t0 + absl::Seconds(1);
  a->Reserve(2'000'000, t1);
  EXPECT_EQ(a->Wait(t1 + absl::Seconds(0.5)), absl::Seconds(1.5)) << "after kLinger, a's own 1 MB/s";
  // A newcomer takes the leaver's place: two shares, not three.
  auto x = pacers.Join("other", 1'000'000, t0);
  auto y = pacers.Join("other", 1'000'000, t0);
  y->Leave(t0);
  x->Reserve(2'000'000, t0);
  auto z = pacers.Join("other", 1'000'000, t0 + absl::Seconds(0.5));
  EXPECT_EQ(x->Wait(t0 + absl::Seconds(0.5)), absl::Seconds(0.5)) << "1 MB left at 2 MB/s";
}

}  // namespace
}  // namespace cloudflux::storage
