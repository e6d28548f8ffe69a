#include "cloudflux/server/paging.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "cloudflux/core/names.h"

namespace cloudflux::server {

absl::StatusOr<PageCursor> ParsePage(const cloudflux::common::v1::PageRequest& request,
                                     int default_size, int max_size) {
  if (request.page_size() < 0) return absl::InvalidArgumentError("page_size must not be negative");
  PageCursor cursor;
  cursor.size = request.page_size() == 0 ? default_size : std::min(request.page_size(), max_size);
  if (!request.page_token().empty() &&
      !absl::WebSafeBase64Unescape(request.page_token(), &cursor.after)) {
    return absl::InvalidArgumentError("invalid page_token");
  }
  // Tokens this server made hold text; anything else was made up.
  if (!core::IsValidUtf8(cursor.after)) return absl::InvalidArgumentError("invalid page_token");
  return cursor;
}

std::string PageToken(std::string_view after) {
  std::string token;
  absl::WebSafeBase64Escape(absl::string_view(after.data(), after.size()), &token);
  return token;
}

}  // namespace cloudflux::server
