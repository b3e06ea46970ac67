/**
 * The test backend (test/support/backend.ts) as a process in a backend namespace: greets each
 * connection with its name and a newline, then echoes. When a connection that sent bytes closes it
 * prints {"event":"conn","bytes","sha256"} of what it received, so the test can check the
 * client → backend leg on its own. `close-first`: it sends its name and closes at once (its side of
 * each connection goes to TIME_WAIT, the case timestamp modulation is for). `echo-peer`: as echo, but
 * the greeting is "<name>@<client IP>" (test/scaleout: which featherlb instance carried it).
 * `source <bytes>`: it sends that many random bytes and closes (a download; 0 = an upload sink), its
 * ready line names their SHA-256. With a PROXY port (echo, close-first, echo-peer) it also serves the
 * e2e protocol there behind a PROXY protocol header (its HELLO names the client the header gave) and
 * prints {"event":"header",…} for each header it parsed (test/support/proxyproto.ts).
 *   bun backend.ts <name> <port> [echo | close-first | echo-peer] [<proxy port>]
 *   bun backend.ts <name> <port> source <bytes>
 */
import { startBackend } from "../../support/backend.ts";

const [name = "backend", port = "8080", behaviour = "echo", extra] = process.argv.slice(2);
const bytes = behaviour === "source" ? extra ?? "0" : "0";
const proxyPort = behaviour === "source" ? undefined : extra;
const print = (o: object) => console.log(JSON.stringify(o));
if (proxyPort) {
  const pp = startBackend(name, { host: "0.0.0.0", port: Number(proxyPort), behaviour: "e2e", proxy: true });
  const seen = { n: 0 };
  setInterval(() => {
    for (; seen.n < pp.headers.length; seen.n++) print({ event: "header", ...pp.headers[seen.n] });
  }, 50);
}

const b = startBackend(name, {
  host: "0.0.0.0",
  port: Number(port),
  behaviour: behaviour === "close-first" || behaviour === "source" ? behaviour : "echo",
  showPeer: behaviour === "echo-peer",
  sourceBytes: Number(bytes),
  onConnClosed: (c) => print({ event: "conn", ...c }),
});
print({ event: "ready", name, port: Number(port), sourceSha: b.sourceSha });
process.on("SIGTERM", () => process.exit(0));
