#pragma once
// SIGTERM/SIGINT handling for servers: block the signals in every thread
// (call first thing in main, before any thread starts) and wait for one on a
// thread of your choice.

namespace cloudflux::server {

// Blocks SIGTERM, SIGINT in the calling thread; threads created afterwards
// inherit the mask.
void BlockShutdownSignals();

// Waits until SIGTERM or SIGINT arrives (or RaiseShutdownSignal is called) and
// returns the signal number.
int WaitForShutdownSignal();

// Wakes WaitForShutdownSignal from inside the process (tests, fatal errors).
void RaiseShutdownSignal();

}  // namespace cloudflux::server
