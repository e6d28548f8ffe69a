#pragma once
// Configuration: absl flags, each with a default that works locally and a help
// line, with CLOUDFLUX_* environment fallbacks. Precedence: command line, then
// environment (--listen-port <- CLOUDFLUX_LISTEN_PORT), then the default.
// Validation happens once at start; a bad value stops the process with a
// message that names the flag and the environment variable.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace cloudflux::core {

// "listen_port" -> "CLOUDFLUX_LISTEN_PORT".
std::string EnvNameForFlag(std::string_view flag_name);

// Applies CLOUDFLUX_* environment values to every registered flag, then parses
// argv (so the command line wins). Returns the positional arguments. Exits
// with status 2 and a message on an unknown flag or an unparsable value.
std::vector<std::string> ParseFlags(int argc, char** argv, std::string_view usage);

// Same as ParseFlags but returns errors instead of exiting (for tests). Does
// not parse argv.
absl::Status ApplyEnvironmentToFlags(const std::function<const char*(const char*)>& getenv_fn);

// Collects validation failures and reports all of them at once.
class ConfigValidator {
 public:
  // Records `message` against `flag_name` when `ok` is false.
  ConfigValidator& Require(bool ok, std::string_view flag_name, std::string_view message);
  // OK, or INVALID_ARGUMENT listing every failed check with its flag and env name.
  absl::Status Result() const;
  // Prints the failures to stderr and exits(2) when there are any.
  void ExitOnError() const;

 private:
  std::vector<std::string> errors_;
};

// Reads a secret from a file path (preferred) or returns the literal; trims a
// trailing newline. Empty input gives an empty string.
absl::Status ReadSecretFile(const std::string& path, std::string* out);

}  // namespace cloudflux::core
