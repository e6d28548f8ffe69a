#pragma once
// cloudflux.common.v1 paging for list methods: a page size with a default
// and a cap, and an opaque token that carries where the next page resumes.

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cloudflux/common/v1/common.pb.h"

namespace cloudflux::server {

struct PageCursor {
  int size = 0;
  std::string after;  // resume after this value; empty on the first page
};

// INVALID_ARGUMENT for a negative size or a token that does not decode.
absl::StatusOr<PageCursor> ParsePage(const cloudflux::common::v1::PageRequest& request,
                                     int default_size, int max_size);
// The token for a page that resumes after `after`.
std::string PageToken(std::string_view after);

}  // namespace cloudflux::server
