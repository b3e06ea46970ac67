/**
 * Counters kept per backend and per service. The proxy bumps them as bytes flow; the XDP data plane
 * copies its per-CPU map sums into them before each scrape. /metrics and /status read only these.
 */
export class Counters {
  /** Connections (proxy) or flows (xdp) open right now. */
  active = 0;
  /** Connections/flows ever opened. */
  total = 0;
  /** Bytes from clients toward backends. */
  bytesIn = 0;
  /** Bytes from backends toward clients. */
  bytesOut = 0;
  /** Packets each way (xdp only; the proxy leaves them at 0). */
  packetsIn = 0;
  packetsOut = 0;
  /** Failed connects to a backend (timeouts, refusals). */
  connectFailures = 0;
}

export class ServiceCounters extends Counters {
  /** Clients closed at once because max_connections was reached. */
  rejectedMaxConn = 0;
  /** Clients closed at once because no backend was healthy. */
  rejectedNoBackend = 0;
  /** Clients closed at once because their IP already had max_connections_per_source connections. */
  rejectedPerSource = 0;
  /** Clients closed because the LB itself ran short (descriptors, local ports, buffers): incidents.ts. */
  rejectedLocal = 0;
  /** Clients closed because their PROXY protocol header was missing, malformed or too long (accept_proxy). */
  rejectedProxyHeader = 0;
  /** Connections handed to the kernel relay (proxy, kernel_relay): their bytes moved by splice(2). */
  kernelRelayed = 0;
}
