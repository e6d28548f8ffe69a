#pragma once
// absl::Status helpers. The Debian abseil (20220623) ships no status macros,
// so these are the project's: early-return on error, unwrap a StatusOr.

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define CF_STATUS_CONCAT_INNER(a, b) a##b
#define CF_STATUS_CONCAT(a, b) CF_STATUS_CONCAT_INNER(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define CF_RETURN_IF_ERROR(expr)                          \
  do {                                                    \
    ::absl::Status cf_status_ = (expr);                   \
    if (!cf_status_.ok()) return cf_status_;              \
  } while (false)

// CF_ASSIGN_OR_RETURN(auto x, MakeX()); declares/assigns `lhs` from a StatusOr
// or returns its error.
#define CF_ASSIGN_OR_RETURN(lhs, expr) \
  CF_ASSIGN_OR_RETURN_IMPL(CF_STATUS_CONCAT(cf_statusor_, __LINE__), lhs, expr)

#define CF_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()

namespace cloudflux::core {

// True for failures a caller may retry unchanged (transient conditions).
inline bool IsRetryable(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

// Prefixes the message of a non-OK status with context, keeping its code.
inline absl::Status Annotate(const absl::Status& status, std::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(std::string(context), ": ", status.message()));
}

}  // namespace cloudflux::core
