// jemalloc's compiled-in options for the service binaries (MALLOC_CONF in
// the environment still overrides them). oversize_threshold:0 keeps large
// blocks (>= 8 MiB: cloud read windows, multipart parts) in the ordinary
// arenas, whose freed pages are reused, instead of a dedicated arena that
// returns them at once and faults fresh ones in on every allocation.
extern "C" {
const char* malloc_conf = "oversize_threshold:0";
}
