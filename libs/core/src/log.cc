#include "cloudflux/core/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cloudflux::core {
namespace {

spdlog::level::level_enum ToSpd(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return spdlog::level::trace;
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
    case LogLevel::kCritical: return spdlog::level::critical;
    case LogLevel::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

// The message handed to spdlog is already the JSON body after the timestamp
// and level ("\"msg\":...,..."); this formatter wraps it into one object.
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string service) : service_(std::move(service)) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    absl::Time t = absl::FromChrono(msg.time);
    std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
    std::string line = "{\"ts\":\"" + ts + "\",\"level\":\"";
    auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += "\",\"service\":\"";
    AppendJsonEscaped(&line, service_);
    line += "\",";
    line.append(msg.payload.data(), msg.payload.size());
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(service_);
  }

 private:
  std::string service_;
};

std::string Body(std::string_view msg, const LogFields& fields) {
  std::string body = "\"msg\":\"";
  AppendJsonEscaped(&body, msg);
  body += "\"";
  for (const auto& [k, v] : fields) {
    body += ",\"";
    AppendJsonEscaped(&body, k);
    body += "\":\"";
    AppendJsonEscaped(&body, v);
    body += "\"";
  }
  return body;
}

}  // namespace

void AppendJsonEscaped(std::string* out, std::string_view text) {
  for (unsigned char c : text) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
}

std::string FormatLogLine(std::string_view timestamp, std::string_view level,
                          std::string_view service, std::string_view msg,
                          const LogFields& fields) {
  std::string line = "{\"ts\":\"";
  line.append(timestamp);
  line += "\",\"level\":\"";
  line.append(level);
  line += "\",\"service\":\"";
  AppendJsonEscaped(&line, service);
  line += "\",";
  line += Body(msg, fields);
  line += "}";
  return line;
}

void InitLogging(std::string_view service, LogLevel level) {
  auto sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("cloudflux", sink);
  logger->set_formatter(std::make_unique<JsonFormatter>(std::string(service)));
  logger->set_level(ToSpd(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

bool ParseLogLevel(std::string_view text, LogLevel* out) {
  static const std::pair<std::string_view, LogLevel> kLevels[] = {
      {"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug},
      {"info", LogLevel::kInfo},   {"warn", LogLevel::kWarn},
      {"error", LogLevel::kError}, {"critical", LogLevel::kCritical},
      {"off", LogLevel::kOff}};
  for (const auto& [name, level] : kLevels) {
    if (text == name) {
      *out = level;
      return true;
    }
  }
  return false;
}

void SetLogLevel(LogLevel level) { spdlog::default_logger()->set_level(ToSpd(level)); }

void Log(LogLevel level, std::string_view msg, const LogFields& fields) {
  auto* logger = spdlog::default_logger_raw();
  auto spd_level = ToSpd(level);
  if (!logger->should_log(spd_level)) return;
  if (logger->name() != "cloudflux") {
    // Logging before InitLogging (tests, tools): still write JSON lines.
    static std::once_flag once;
    std::call_once(once, [] { InitLogging("cloudflux", LogLevel::kInfo); });
    logger = spdlog::default_logger_raw();
  }
  logger->log(spd_level, "{}", Body(msg, fields));
}

}  // namespace cloudflux::core
