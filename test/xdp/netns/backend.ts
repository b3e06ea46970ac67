/**
 * A test backend (run inside a backend namespace): greets each connection with its name and a newline,
 * then echoes every byte back. When a connection ends it prints {"event":"conn","bytes","sha256"} of
 * what it received, so the test can check the client→backend leg on its own.
 * With `close-first` it sends its name and closes at once instead (the backend's side of each
 * connection then goes to TIME_WAIT, the case timestamp modulation is for).
 *   bun backend.ts <name> <port> [close-first]
 */
import { createHash } from "node:crypto";
import net from "node:net";

const [name = "backend", port = "8080", behaviour = "echo"] = process.argv.slice(2);

const server = net.createServer((sock) => {
  if (behaviour === "close-first") {
    sock.on("error", () => {});
    sock.end(`${name}\n`);
    return;
  }
  const hash = createHash("sha256");
  let bytes = 0;
  sock.write(`${name}\n`);
  sock.on("data", (chunk) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  sock.pipe(sock);
  sock.on("error", () => {});
  sock.on("close", () => {
    if (bytes > 0) console.log(JSON.stringify({ event: "conn", bytes, sha256: hash.digest("hex") }));
  });
});
server.listen(Number(port), "0.0.0.0", () => console.log(JSON.stringify({ event: "ready", name, port: Number(port) })));
process.on("SIGTERM", () => process.exit(0));
