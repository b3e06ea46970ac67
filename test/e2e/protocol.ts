/**
 * The e2e wire protocol between the load client and the backend, spoken *through* featherlb. It is
 * server-first, so the client learns which backend it reached before it sends anything:
 *
 *   backend → client   HELLO <backend-id> <instance>[ <client>]\n   (on accept; <client> is the
 *                      "ip:port" of the PROXY protocol header featherlb sent, on the backend's PROXY port)
 *   client  → backend  ECHO <length> <hold-ms>\n<length bytes>    (after HELLO)
 *   backend → client   the same <length> bytes, echoed as they arrive
 *   backend            waits <hold-ms> once every byte is echoed (simulates a slow request)
 *   backend → client   OK <sha256-hex of what it received> <length>\n, then it closes.
 *
 * The backend closes first, so TIME_WAIT lands on the backend and the LB, never on the client: a load
 * run of a few hundred thousand short connections cannot exhaust the client's ephemeral ports.
 *
 * `instance` is a random token drawn at start, so a restarted backend is distinguishable from the one
 * that was killed.
 */

/** Longest line either side accepts before calling the peer broken. */
export const MAX_LINE = 256;

export interface Hello {
  backend: string;
  instance: string;
  /** The client "ip:port" of the PROXY header the backend received (its PROXY port only). */
  client?: string;
}

export interface EchoRequest {
  length: number;
  holdMs: number;
}

export interface Trailer {
  sha256: string;
  length: number;
}

export const formatHello = (h: Hello): string => `HELLO ${h.backend} ${h.instance}${h.client ? ` ${h.client}` : ""}\n`;
export const formatRequest = (r: EchoRequest): string => `ECHO ${r.length} ${r.holdMs}\n`;
export const formatTrailer = (t: Trailer): string => `OK ${t.sha256} ${t.length}\n`;

const ID = /^[A-Za-z0-9._:-]{1,64}$/;

/** Parse one line without its "\n"; null when it is not a well-formed HELLO. */
/** "ip:port", IPv4 or IPv6 (no brackets: the port is after the last colon). */
const CLIENT = /^[0-9A-Fa-f.:]{2,45}:\d{1,5}$/;

export function parseHello(line: string): Hello | null {
  const [word, backend, instance, client, ...rest] = line.split(" ");
  if (word !== "HELLO" || rest.length || !backend || !instance || !ID.test(backend) || !ID.test(instance)) return null;
  if (client !== undefined && !CLIENT.test(client)) return null;
  return client === undefined ? { backend, instance } : { backend, instance, client };
}

/** Upper bounds keep a garbled header from making the backend wait or echo forever. */
export const MAX_LENGTH = 1 << 30;
export const MAX_HOLD_MS = 60_000;

export function parseRequest(line: string): EchoRequest | null {
  const m = /^ECHO (\d{1,10}) (\d{1,6})$/.exec(line);
  if (!m) return null;
  const length = Number(m[1]);
  const holdMs = Number(m[2]);
  if (length > MAX_LENGTH || holdMs > MAX_HOLD_MS) return null;
  return { length, holdMs };
}

export function parseTrailer(line: string): Trailer | null {
  const m = /^OK ([0-9a-f]{64}) (\d{1,10})$/.exec(line);
  return m ? { sha256: m[1]!, length: Number(m[2]) } : null;
}

/**
 * Accumulates bytes until a "\n". `push` returns the line (without "\n") and the bytes after it once
 * the line is complete, null while it is not, and throws past MAX_LINE.
 */
export class LineReader {
  private parts: Uint8Array[] = [];
  private size = 0;

  push(chunk: Uint8Array): { line: string; rest: Uint8Array } | null {
    const nl = chunk.indexOf(10);
    if (nl < 0) {
      this.size += chunk.length;
      if (this.size > MAX_LINE) throw new Error(`line longer than ${MAX_LINE} bytes`);
      this.parts.push(chunk);
      return null;
    }
    this.size += nl;
    if (this.size > MAX_LINE) throw new Error(`line longer than ${MAX_LINE} bytes`);
    this.parts.push(chunk.subarray(0, nl));
    const line = Buffer.concat(this.parts).toString("latin1");
    this.parts = [];
    this.size = 0;
    return { line, rest: chunk.subarray(nl + 1) };
  }
}
