#include "cloudflux/core/config.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/str_join.h"

namespace cloudflux::core {

std::string EnvNameForFlag(std::string_view flag_name) {
  std::string env = "CLOUDFLUX_";
  for (char c : flag_name) {
    env.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return env;
}

absl::Status ApplyEnvironmentToFlags(const std::function<const char*(const char*)>& getenv_fn) {
  std::vector<std::string> errors;
  for (auto& [name, flag] : absl::GetAllFlags()) {
    std::string env = EnvNameForFlag(std::string_view(name.data(), name.size()));
    const char* value = getenv_fn(env.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      errors.push_back(absl::StrCat(env, "=", value, " is not a valid value for --", name, ": ",
                                    error));
    }
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
}

std::vector<std::string> ParseFlags(int argc, char** argv, std::string_view usage) {
  absl::SetProgramUsageMessage(std::string(usage));
  absl::FlagsUsageConfig usage_config;
  // --help lists the project's flags (not abseil's own).
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "services/") || absl::StrContains(file, "libs/") ||
           absl::StrContains(file, "tools/") || absl::StrContains(file, "bench/");
  };
  absl::SetFlagsUsageConfig(usage_config);
  absl::Status env_status = ApplyEnvironmentToFlags([](const char* n) { return std::getenv(n); });
  if (!env_status.ok()) {
    std::cerr << "configuration error: " << env_status.message() << "\n";
    std::exit(2);
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> out;
  for (size_t i = 1; i < positional.size(); ++i) out.emplace_back(positional[i]);
  return out;
}

ConfigValidator& ConfigValidator::Require(bool ok, std::string_view flag_name,
                                          std::string_view message) {
  if (!ok) {
    errors_.push_back(
        absl::StrCat("--", std::string(flag_name), " (", EnvNameForFlag(flag_name), "): ", std::string(message)));
  }
  return *this;
}

absl::Status ConfigValidator::Result() const {
  if (errors_.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(errors_, "; "));
}

void ConfigValidator::ExitOnError() const {
  if (errors_.empty()) return;
  std::cerr << "configuration error:\n";
  for (const auto& e : errors_) std::cerr << "  " << e << "\n";
  std::exit(2);
}

absl::Status ReadSecretFile(const std::string& path, std::string* out) {
  out->clear();
  if (path.empty()) return absl::OkStatus();
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read secret file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  while (!out->empty() && (out->back() == '\n' || out->back() == '\r')) out->pop_back();
  return absl::OkStatus();
}

}  // namespace cloudflux::core
