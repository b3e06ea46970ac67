/**
 * The one error type of the XDP data plane's internals: a literal `code` to switch on (as src/errors.ts
 * UserError, which is what the user sees: index.ts and loader.ts turn these into UserErrors where the
 * user can act on them).
 */
export type XdpErrorCode =
  | "bpf" // a libbpf call failed: `errno` (positive) says why, `log` holds libbpf's and the verifier's output
  | "plan_too_large" // a plan does not fit the maps: no room left in the slot pool, or more members than MAX_BACKENDS
  | "invalid_argument" // an index beyond what the maps are sized for, an address that is not IPv4: a bug in the caller
  | "closed" // the BPF object was used after close()
  | "neighbour" // the kernel could not be asked to keep a next hop resolved (no route, routed elsewhere, refused)
  | "netlink" // a netlink socket call failed (nlsocket.ts): `errno` says why
  | "host"; // a host setting could not be read or changed (net.ipv4.ip_local_reserved_ports)

export class XdpError extends Error {
  constructor(
    readonly code: XdpErrorCode,
    message: string,
    /** codes "bpf", "netlink", "neighbour": the positive errno (EPERM = 1, …) where there is one; 0 otherwise. */
    readonly errno = 0,
    /** code "bpf": libbpf's log collected while the failing call ran (the verifier's explanation on load). */
    readonly log = "",
  ) {
    super(message);
    this.name = "XdpError";
  }
}

/** True for an XdpError with one of `codes`: `catch (err) { if (!isXdpError(err, "bpf")) throw err; … }`. */
export function isXdpError(err: unknown, ...codes: XdpErrorCode[]): err is XdpError {
  return err instanceof XdpError && (codes.length === 0 || codes.includes(err.code));
}
