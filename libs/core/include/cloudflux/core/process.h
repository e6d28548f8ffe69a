#pragma once
// Process-wide settings every CloudFlux server applies once at start.

namespace cloudflux::core {

// Turns off abseil's mutex deadlock detection (Debian's abseil is built with
// it on; it costs a graph update on every absl::Mutex lock, gRPC's own
// included, which halves a gRPC server's call rate) and caps glibc's malloc
// arenas at one per core (bounded memory for streaming servers). Idempotent.
void TuneProcessForServing();

}  // namespace cloudflux::core
