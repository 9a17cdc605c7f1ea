// Why a port could not be listened on: what may hold it. A port is taken by
// a listener, and also by the local end of an outgoing connection: the
// system picks those from its range for outgoing connections (Linux:
// 32768-60999 by default), so a port there may be held by any program's
// client for a while, with nothing listening on it.

/** The system's range of local ports for outgoing connections (Linux's); null when unknown. */
export function outgoingRange(): { low: number; high: number } | null {
  try {
    const text = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range");
    const [low, high] = text.trim().split(/\s+/).map(Number);
    return Number.isInteger(low) && Number.isInteger(high) ? { low, high } : null;
  } catch {
    return null;
  }
}

/**
 * What `port`, found in use, is held by, after "is": another process
 * outside the range for outgoing connections; within it, a listener or a
 * connection's local end, and where to choose a port instead.
 */
export function inUse(port: number, range = outgoingRange()): string {
  if (range === null) return "in use (a listener, or a connection's local end)";
  const { low, high } = range;
  if (port < low || port > high) return "in use by another process";
  // A range starting low (1024) leaves the ports above it.
  const instead = low > 1024 ? `below ${low}` : `above ${high}`;
  return `in use (a listener, or a connection's local end: ${port} is within the system's ` +
    `range for outgoing connections, ${low}-${high}; choose a port ${instead})`;
}
