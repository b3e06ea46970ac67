/**
 * A process bound to the service's own address and port in the LB's namespace (hostile.ts "refuse"):
 * the XDP program must answer every service SYN itself, so this must never accept a connection. Prints
 * {event:"ready"}, then {event:"accepted", n} for each connection it gets (and closes it).
 *   bun listener.ts <ip> <port>
 */
const [ip = "127.0.0.1", port = "80"] = process.argv.slice(2);
let n = 0;
Bun.listen({
  hostname: ip,
  port: Number(port),
  socket: {
    open(s) {
      console.log(JSON.stringify({ event: "accepted", n: ++n }));
      s.end();
    },
    data() {},
  },
});
console.log(JSON.stringify({ event: "ready" }));
process.on("SIGTERM", () => process.exit(0));
