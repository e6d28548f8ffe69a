#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <map>
#include <set>

#include "absl/flags/flag.h"
#include "cloudflux/core/clock.h"
#include "cloudflux/core/config.h"
#include "cloudflux/core/digest.h"
#include "cloudflux/core/log.h"
#include "cloudflux/core/names.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "cloudflux/core/periodic.h"
#include "cloudflux/core/status.h"
#include "cloudflux/core/uuid.h"

ABSL_FLAG(int32_t, core_test_port, 50051, "a port");
ABSL_FLAG(std::string, core_test_name, "default", "a name");

namespace cloudflux::core {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  CF_ASSIGN_OR_RETURN(int h, Half(x));
  CF_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

absl::Status CheckPositive(int x) {
  CF_RETURN_IF_ERROR(x > 0 ? absl::OkStatus() : absl::OutOfRangeError("not positive"));
  return absl::OkStatus();
}

TEST(PeriodicTask, RunsOnWakeAndOnceMoreOnFinalStop) {
  std::atomic<int> runs{0};
  PeriodicTask task(absl::Hours(1), [&] { ++runs; });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(runs.load(), 0);  // the interval has not passed
  task.Wake();
  for (int i = 0; i < 200 && runs.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(runs.load(), 1);
  task.Stop(/*final_run=*/true);
  EXPECT_EQ(runs.load(), 2);
  task.Stop(true);  // idempotent
  EXPECT_EQ(runs.load(), 2);
}

TEST(PeriodicTask, RunsEveryInterval) {
  std::atomic<int> runs{0};
  PeriodicTask task(absl::Milliseconds(10), [&] { ++runs; });
  for (int i = 0; i < 400 && runs.load() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  task.Stop();
  int after_stop = runs.load();
  EXPECT_GE(after_stop, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(runs.load(), after_stop);
}

TEST(StatusMacros, PropagateErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckPositive(1).ok());
  EXPECT_EQ(CheckPositive(0).code(), absl::StatusCode::kOutOfRange);
}

TEST(StatusHelpers, RetryableAndAnnotate) {
  EXPECT_TRUE(IsRetryable(absl::UnavailableError("x")));
  EXPECT_FALSE(IsRetryable(absl::InvalidArgumentError("x")));
  absl::Status s = Annotate(absl::NotFoundError("row"), "loading job");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "loading job: row");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

TEST(Config, EnvNames) {
  EXPECT_EQ(EnvNameForFlag("listen_port"), "CLOUDFLUX_LISTEN_PORT");
  EXPECT_EQ(EnvNameForFlag("pg-url"), "CLOUDFLUX_PG_URL");
}

TEST(Config, EnvironmentFillsFlagsAndRejectsBadValues) {
  std::map<std::string, std::string> env = {{"CLOUDFLUX_CORE_TEST_PORT", "6000"},
                                            {"CLOUDFLUX_CORE_TEST_NAME", "from-env"}};
  auto lookup = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  ASSERT_TRUE(ApplyEnvironmentToFlags(lookup).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_core_test_port), 6000);
  EXPECT_EQ(absl::GetFlag(FLAGS_core_test_name), "from-env");

  env["CLOUDFLUX_CORE_TEST_PORT"] = "not-a-number";
  absl::Status bad = ApplyEnvironmentToFlags(lookup);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("CLOUDFLUX_CORE_TEST_PORT"), std::string::npos);
  EXPECT_EQ(absl::GetFlag(FLAGS_core_test_port), 6000) << "a bad value must change nothing";
}

TEST(Config, ValidatorListsEveryFailure) {
  ConfigValidator v;
  v.Require(true, "ok_flag", "fine").Require(false, "listen_port", "must be 1..65535");
  v.Require(false, "pg_url", "must not be empty");
  absl::Status s = v.Result();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--listen_port (CLOUDFLUX_LISTEN_PORT): must be 1..65535"),
            std::string::npos);
  EXPECT_NE(s.message().find("--pg_url"), std::string::npos);
  EXPECT_EQ(s.message().find("ok_flag"), std::string::npos);
}

TEST(Config, SecretFile) {
  std::string path = ::testing::TempDir() + "/secret";
  FILE* f = fopen(path.c_str(), "w");
  fputs("s3cr3t\n", f);
  fclose(f);
  std::string out;
  ASSERT_TRUE(ReadSecretFile(path, &out).ok());
  EXPECT_EQ(out, "s3cr3t");
  EXPECT_EQ(ReadSecretFile(path + ".missing", &out).code(), absl::StatusCode::kNotFound);
}

TEST(Log, LinesAreJsonWithEscapedFields) {
  std::string line = FormatLogLine("2026-01-01T00:00:00.000000Z", "info", "auth",
                                   "quote \" and\nnewline", {{"request_id", "r\\1"}});
  EXPECT_EQ(line,
            "{\"ts\":\"2026-01-01T00:00:00.000000Z\",\"level\":\"info\",\"service\":\"auth\","
            "\"msg\":\"quote \\\" and\\nnewline\",\"request_id\":\"r\\\\1\"}");
  std::string ctl;
  AppendJsonEscaped(&ctl, std::string("\x01", 1));
  EXPECT_EQ(ctl, "\\u0001");
  LogLevel level;
  EXPECT_TRUE(ParseLogLevel("warn", &level));
  EXPECT_EQ(level, LogLevel::kWarn);
  EXPECT_FALSE(ParseLogLevel("loud", &level));
}

TEST(Digest, HexAndSha256) {
  EXPECT_EQ(HexEncode(std::string("\x00\xff\x10", 3)), "00ff10");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 streaming;
  streaming.Update("a");
  streaming.Update("");
  streaming.Update("bc");
  EXPECT_EQ(streaming.HexDigest(), Sha256Hex("abc"));
}

TEST(Digest, Sha256StateSavedAtABlockBoundaryContinuesElsewhere) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 7919 % 251));
  Sha256 first;
  first.Update(data.substr(0, 100));
  EXPECT_EQ(first.SaveState(), "");  // mid-block: no state to save
  first.Update(data.substr(100, 64 * 1000 - 100));
  EXPECT_EQ(first.bytes(), 64000u);
  std::string state = first.SaveState();
  ASSERT_EQ(state.size(), 40u);
  Sha256 second;
  EXPECT_FALSE(second.RestoreState("short"));
  std::string torn = state;
  torn[39] = 1;  // a bit count that is not a whole block
  EXPECT_FALSE(second.RestoreState(torn));
  ASSERT_TRUE(second.RestoreState(state));
  EXPECT_EQ(second.bytes(), 64000u);
  second.Update(data.substr(64000));
  EXPECT_EQ(second.HexDigest(), Sha256Hex(data));
}

TEST(Clock, ManualClockMovesOnlyWhenTold) {
  ManualClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(105));
}

TEST(Uuid, V7LayoutAndRoundTrip) {
  ManualClock clock(absl::FromUnixMillis(0x0123456789ab));
  UuidV7Generator gen(clock);
  Uuid u = gen.Next();
  EXPECT_EQ(u[0], 0x01);
  EXPECT_EQ(u[5], 0xab);
  EXPECT_EQ(u[6] >> 4, 7) << "version nibble";
  EXPECT_EQ(u[8] >> 6, 2) << "RFC 4122 variant";
  std::string s = UuidToString(u);
  ASSERT_EQ(s.size(), 36u);
  EXPECT_EQ(s.substr(0, 13), "01234567-89ab");
  auto parsed = ParseUuid(s);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, u);
  EXPECT_FALSE(ParseUuid("not-a-uuid").has_value());
  EXPECT_FALSE(ParseUuid("01234567-89ab-7xyz-8000-000000000000").has_value());
}

TEST(Uuid, StrictlyIncreasingWithinOneMillisecondAndUnique) {
  ManualClock clock;
  UuidV7Generator gen(clock);
  std::set<std::string> seen;
  std::string prev;
  for (int i = 0; i < 10000; ++i) {  // more than the 12-bit counter holds
    std::string id = gen.NextString();
    EXPECT_GT(id, prev);
    prev = id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 10000u);
  EXPECT_NE(NewId(), NewId());
}

}  // namespace
}  // namespace cloudflux::core

namespace cloudflux::core {
namespace {

TEST(Names, Utf8ValidationRejectsOverlongsSurrogatesAndTruncation) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));  // été € 😀
  EXPECT_TRUE(IsValidUtf8("\xf4\x8f\xbf\xbf"));                               // U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xff\xfe"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // cut short
}

TEST(Names, NamespacesKeysPrefixesAndLabels) {
  EXPECT_TRUE(ValidateNamespace("photos-2024.v1").ok());
  for (const std::string& bad : {std::string(""), std::string("Photos"), std::string("-x"),
                                 std::string("a%b"), std::string(64, 'a'), std::string("a\0b", 3)}) {
    EXPECT_EQ(ValidateNamespace(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(ValidateKey("a/b/c.txt").ok());
  EXPECT_TRUE(ValidateKey("\xc3\xa9t\xc3\xa9/..hidden").ok());
  for (const std::string& bad :
       {std::string(""), std::string("/abs"), std::string("a/../b"), std::string("a/./b"), std::string(".."),
        std::string("nul\0x", 5), std::string("tab\tkey"), std::string("del\x7f"), std::string("c1\xc2\x85"),
        std::string("\xff"), std::string(1025, 'k')}) {
    EXPECT_EQ(ValidateKey(bad).code(), absl::StatusCode::kInvalidArgument) << absl::CHexEscape(bad);
  }
  EXPECT_TRUE(ValidatePrefix("").ok());
  EXPECT_TRUE(ValidatePrefix("logs/.").ok());
  EXPECT_EQ(ValidatePrefix(std::string("p\0", 2)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidatePrefix("new\nline").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateLabel("A label, with punctuation!", "label", 64).ok());
  EXPECT_EQ(ValidateLabel(std::string(65, 'x'), "label", 64).code(), absl::StatusCode::kInvalidArgument);
  auto s = ValidateLabel("bell\a", "reason", 64);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "reason")) << s;
}

}  // namespace
}  // namespace cloudflux::core
