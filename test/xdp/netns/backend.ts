/**
 * A test backend (run inside a backend namespace): greets each connection with its name and a newline,
 * then echoes every byte back. When a connection ends it prints {"event":"conn","bytes","sha256"} of
 * what it received, so the test can check the client→backend leg on its own.
 *   bun backend.ts <name> <port>
 */
import { createHash } from "node:crypto";
import net from "node:net";

const [name = "backend", port = "8080"] = process.argv.slice(2);

const server = net.createServer((sock) => {
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
