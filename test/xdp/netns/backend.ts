/**
 * The test backend (test/support/backend.ts) as a process in a backend namespace: greets each
 * connection with its name and a newline, then echoes. When a connection that sent bytes closes it
 * prints {"event":"conn","bytes","sha256"} of what it received, so the test can check the
 * client → backend leg on its own. `close-first`: it sends its name and closes at once (its side of
 * each connection goes to TIME_WAIT, the case timestamp modulation is for). `echo-peer`: as echo, but
 * the greeting is "<name>@<client IP>" (test/scaleout: which featherlb instance carried it).
 *   bun backend.ts <name> <port> [close-first|echo-peer]
 */
import { startBackend } from "../../support/backend.ts";

const [name = "backend", port = "8080", behaviour = "echo"] = process.argv.slice(2);
const print = (o: object) => console.log(JSON.stringify(o));

startBackend(name, {
  host: "0.0.0.0",
  port: Number(port),
  behaviour: behaviour === "close-first" ? "close-first" : "echo",
  showPeer: behaviour === "echo-peer",
  onConnClosed: (c) => print({ event: "conn", ...c }),
});
print({ event: "ready", name, port: Number(port) });
process.on("SIGTERM", () => process.exit(0));
