/**
 * The test backend (test/support/backend.ts) as a process in a backend namespace: greets each
 * connection with its name and a newline, then echoes. When a connection that sent bytes closes it
 * prints {"event":"conn","bytes","sha256"} of what it received, so the test can check the
 * client → backend leg on its own. `close-first`: it sends its name and closes at once (its side of
 * each connection goes to TIME_WAIT, the case timestamp modulation is for). `echo-peer`: as echo, but
 * the greeting is "<name>@<client IP>" (test/scaleout: which featherlb instance carried it).
 * `source <bytes>`: it sends that many random bytes and closes (a download; 0 = an upload sink), its
 * ready line names their SHA-256.
 *   bun backend.ts <name> <port> [close-first | echo-peer | source <bytes>]
 */
import { startBackend } from "../../support/backend.ts";

const [name = "backend", port = "8080", behaviour = "echo", bytes = "0"] = process.argv.slice(2);
const print = (o: object) => console.log(JSON.stringify(o));

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
