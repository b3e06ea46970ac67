/**
 * The test backend (test/support/backend.ts) as a process in a backend namespace: greets each
 * connection with its name and a newline, then echoes. When a connection that sent bytes closes it
 * prints {"event":"conn","bytes","sha256"} of what it received, so the test can check the
 * client → backend leg on its own. `close-first`: it sends its name and closes at once (its side of
 * each connection goes to TIME_WAIT, the case timestamp modulation is for). With a PROXY port it also
 * serves the e2e protocol there behind a PROXY protocol header (its HELLO names the client the header
 * gave) and prints {"event":"header",…} for each header it parsed (test/support/proxyproto.ts).
 *   bun backend.ts <name> <port> [echo|close-first] [<proxy port>]
 */
import { startBackend } from "../../support/backend.ts";

const [name = "backend", port = "8080", behaviour = "echo", proxyPort] = process.argv.slice(2);
const print = (o: object) => console.log(JSON.stringify(o));
if (proxyPort) {
  const pp = startBackend(name, { host: "0.0.0.0", port: Number(proxyPort), behaviour: "e2e", proxy: true });
  const seen = { n: 0 };
  setInterval(() => {
    for (; seen.n < pp.headers.length; seen.n++) print({ event: "header", ...pp.headers[seen.n] });
  }, 50);
}

startBackend(name, {
  host: "0.0.0.0",
  port: Number(port),
  behaviour: behaviour === "close-first" ? "close-first" : "echo",
  onConnClosed: (c) => print({ event: "conn", ...c }),
});
print({ event: "ready", name, port: Number(port) });
process.on("SIGTERM", () => process.exit(0));
