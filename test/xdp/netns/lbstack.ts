/**
 * The LB host's own services during the integration test (run in the LB namespace): TCP :2222 answers
 * "lbstack", UDP :9999 echoes with a prefix. Traffic to them must pass through XDP untouched.
 *   bun lbstack.ts <ip>
 */
const ip = process.argv[2]!;
Bun.listen({ hostname: ip, port: 2222, socket: { open: (s) => void s.end("lbstack\n"), data() {} } });
await Bun.udpSocket({
  hostname: ip,
  port: 9999,
  socket: { data: (sock, buf, port, addr) => void sock.send(`lbstack:${buf.toString()}`, port, addr) },
});
console.log(JSON.stringify({ event: "ready" }));
process.on("SIGTERM", () => process.exit(0));
