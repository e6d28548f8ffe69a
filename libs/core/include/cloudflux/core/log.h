#pragma once
// Structured JSON logging on stdout, one object per line:
//   {"ts":"2026-11-22T10:00:00.123456Z","level":"info","service":"auth",
//    "msg":"...","request_id":"...", ...}
// Backed by spdlog (thread-safe, synchronous stdout sink).

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cloudflux::core {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// Structured fields appended after "msg". Values are written as JSON strings.
using LogFields = std::vector<std::pair<std::string, std::string>>;

// Installs the JSON logger as the process default. Call once from main.
void InitLogging(std::string_view service, LogLevel level = LogLevel::kInfo);
// "info", "debug", ... ; returns false on an unknown name.
bool ParseLogLevel(std::string_view text, LogLevel* out);
void SetLogLevel(LogLevel level);

void Log(LogLevel level, std::string_view msg, const LogFields& fields = {});
inline void LogInfo(std::string_view msg, const LogFields& fields = {}) {
  Log(LogLevel::kInfo, msg, fields);
}
inline void LogWarn(std::string_view msg, const LogFields& fields = {}) {
  Log(LogLevel::kWarn, msg, fields);
}
inline void LogError(std::string_view msg, const LogFields& fields = {}) {
  Log(LogLevel::kError, msg, fields);
}
inline void LogDebug(std::string_view msg, const LogFields& fields = {}) {
  Log(LogLevel::kDebug, msg, fields);
}

// Appends `text` to `out` as JSON string contents (no surrounding quotes).
void AppendJsonEscaped(std::string* out, std::string_view text);

// Formats one log line exactly as the logger writes it (for tests and sinks).
std::string FormatLogLine(std::string_view timestamp, std::string_view level,
                          std::string_view service, std::string_view msg,
                          const LogFields& fields);

}  // namespace cloudflux::core
