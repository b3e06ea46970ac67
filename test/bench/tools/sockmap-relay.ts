/**
 * The sockmap relay experiment (issue 13): why featherlb's kernel relay uses splice(2), not an eBPF
 * sockmap. Root only; everything on 127.0.0.1 in this one process, bounded in time.
 *
 *   bun test/bench/tools/sockmap-relay.ts OBJ    (OBJ: sockmap_relay.bpf.c compiled; `make bench-sockmap`)
 *
 * A relay (client → relay → backend) runs twice, its bytes moved either by JavaScript (Bun sockets,
 * write + pause/drain backpressure, as featherlb's proxy) or by the kernel (both sockets put into the
 * sockmap after the first 64 KiB, the sk_skb verdict program redirecting every skb to the peer).
 *   1. throughput: the client sends 2 GiB (or for 15 s) to a backend that reads and discards; Gbit/s
 *      and the bytes that arrived (the relay forwards the client's FIN 300 ms after it came);
 *   2. backpressure: the backend reads nothing; the client writes for 4 s; how much it could write,
 *      and how much MemAvailable fell meanwhile (kernel memory holding the bytes in flight).
 * Prints one JSON line per mode and test.
 */
import { dlopen, ptr, type Pointer } from "bun:ffi";
import { readFileSync } from "node:fs";
import type { Socket } from "bun";

const OBJ = process.argv[2];
if (!OBJ) throw new Error("usage: sockmap-relay.ts OBJECT");
const MiB = 1 << 20;
const SWITCH_AFTER = 64 * 1024;
const BPF_SK_SKB_VERDICT = 38;
const SOL_SOCKET = 1;
const SO_RCVLOWAT = 18;
const SO_COOKIE = 57;

const bpf = dlopen("libbpf.so.1", {
  bpf_object__open_file: { args: ["cstring", "ptr"], returns: "ptr" },
  bpf_object__load: { args: ["ptr"], returns: "i32" },
  bpf_object__find_map_by_name: { args: ["ptr", "cstring"], returns: "ptr" },
  bpf_object__find_program_by_name: { args: ["ptr", "cstring"], returns: "ptr" },
  bpf_map__set_max_entries: { args: ["ptr", "u32"], returns: "i32" },
  bpf_map__fd: { args: ["ptr"], returns: "i32" },
  bpf_program__fd: { args: ["ptr"], returns: "i32" },
  bpf_prog_attach: { args: ["i32", "i32", "u32", "u32"], returns: "i32" },
  bpf_map_update_elem: { args: ["i32", "ptr", "ptr", "u64"], returns: "i32" },
}).symbols;
const libc = dlopen("libc.so.6", {
  getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
}).symbols;
const cs = (s: string) => Buffer.from(`${s}\0`);

const obj = bpf.bpf_object__open_file(cs(OBJ), null) as Pointer | null;
if (!obj) throw new Error(`cannot open ${OBJ}`);
for (const m of ["flb_relay_socks", "flb_relay_slot", "flb_relay_bytes"]) bpf.bpf_map__set_max_entries(bpf.bpf_object__find_map_by_name(obj, cs(m)), 64);
if (bpf.bpf_object__load(obj) !== 0) throw new Error("bpf_object__load failed (root? kernel with sockmap?)");
const mapFd = (m: string) => bpf.bpf_map__fd(bpf.bpf_object__find_map_by_name(obj, cs(m)));
const socks = mapFd("flb_relay_socks");
const slots = mapFd("flb_relay_slot");
const prog = bpf.bpf_program__fd(bpf.bpf_object__find_program_by_name(obj, cs("flb_relay")));
if (bpf.bpf_prog_attach(prog, socks, BPF_SK_SKB_VERDICT, 0) !== 0) throw new Error("bpf_prog_attach failed");
let nextSlot = 0;

function cookie(fd: number): BigUint64Array {
  const v = new BigUint64Array(1);
  const len = new Uint32Array([8]);
  if (libc.getsockopt(fd, SOL_SOCKET, SO_COOKIE, ptr(v), ptr(len)) !== 0) throw new Error("SO_COOKIE");
  return v;
}

/** Put a pair in the sockmap (indexes 2k, 2k+1) and kick each socket's data_ready for bytes already queued. */
function toKernel(client: Socket<Side>, backend: Socket<Side>): void {
  const base = nextSlot;
  nextSlot += 2;
  for (const [i, s] of [client, backend].entries()) {
    const fd = (s as unknown as { fd: number }).fd;
    const key = new Uint32Array([base + i]);
    if (bpf.bpf_map_update_elem(slots, ptr(cookie(fd)), ptr(key), 0) !== 0) throw new Error("slot update");
    if (bpf.bpf_map_update_elem(socks, ptr(key), ptr(new BigUint64Array([BigInt(fd)])), 0) !== 0) throw new Error("sockmap update");
  }
  for (const s of [client, backend]) {
    s.resume(); // Bun must still see the end of stream
    // SO_RCVLOWAT runs tcp_data_ready: bytes that arrived before the insert are redirected too.
    libc.setsockopt((s as unknown as { fd: number }).fd, SOL_SOCKET, SO_RCVLOWAT, ptr(new Int32Array([1])), 4);
  }
}

interface Side {
  peer: Socket<Side> | null;
  moved: number;
  kernel: boolean;
  /** Bytes read from this socket that its peer has not taken yet. */
  pending: Buffer | null;
}

/** The relay under test; `kernel`: hand each pair to the sockmap after SWITCH_AFTER bytes. */
function relay(backendPort: number, kernel: boolean) {
  // JavaScript backpressure as featherlb's relay does it: a short write keeps the rest and pauses the
  // source until the destination drains.
  const forward = (from: Socket<Side>, data: Buffer) => {
    const to = from.data.peer!;
    const n = to.write(data);
    from.data.moved += data.length;
    if (n < data.length) {
      from.data.pending = Buffer.from(data.subarray(Math.max(n, 0)));
      from.pause();
      return;
    }
    if (kernel && !from.data.kernel && from.data.moved >= SWITCH_AFTER && !to.data.pending) {
      from.data.kernel = to.data.kernel = true;
      from.pause();
      to.pause();
      setImmediate(() => toKernel(from, to));
    }
  };
  const drained = (to: Socket<Side>) => {
    const from = to.data?.peer;
    const rest = from?.data.pending;
    if (!rest) return;
    const n = to.write(rest);
    from!.data.pending = n < rest.length ? rest.subarray(Math.max(n, 0)) : null;
    if (!from!.data.pending) from!.resume();
  };
  return Bun.listen<Side>({
    hostname: "127.0.0.1",
    port: 0,
    allowHalfOpen: true,
    socket: {
      async open(client) {
        client.data = { peer: null, moved: 0, kernel: false, pending: null };
        client.pause();
        const backend = await Bun.connect<Side>({
          hostname: "127.0.0.1",
          port: backendPort,
          allowHalfOpen: true,
          socket: { data: (b, d) => forward(b, d), end: (b) => b.data.peer!.shutdown(), drain: (b) => drained(b) },
        });
        backend.data = { peer: client, moved: 0, kernel: false, pending: null };
        client.data.peer = backend;
        client.resume();
      },
      data: (c, d) => forward(c, d),
      drain: (c) => drained(c),
      // With the sockmap, user space cannot see when the queued bytes went out: forward FIN after 300 ms.
      end: (c) => void setTimeout(() => c.data.peer?.shutdown(), c.data.kernel ? 300 : 0),
    },
  });
}

const memAvailable = () => Number(/MemAvailable:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))![1]) * 1024;

async function throughput(kernel: boolean): Promise<Record<string, unknown>> {
  let got = 0;
  let done!: (ms: number) => void;
  const finished = new Promise<number>((r) => (done = r));
  const t0 = performance.now();
  const sink = Bun.listen({ hostname: "127.0.0.1", port: 0, allowHalfOpen: true, socket: { data: (_s, d) => void (got += d.length), end: (s) => { done(performance.now() - t0); s.end(); } } });
  const lb = relay(sink.port, kernel);
  const total = 2048 * MiB;
  const chunk = Buffer.alloc(4 * MiB, 7);
  const stopAt = Date.now() + 15_000;
  let sent = 0;
  const pump = (s: Socket<unknown>) => {
    while (sent < total && Date.now() < stopAt) {
      const n = s.write(chunk); // what it did not take is not resent: only the count matters here
      sent += Math.max(n, 0);
      if (n < chunk.length) return;
    }
    s.shutdown();
  };
  const cpu0 = process.cpuUsage();
  await Bun.connect({ hostname: "127.0.0.1", port: lb.port, allowHalfOpen: true, socket: { open: pump, drain: pump, data() {} } });
  const ms = await Promise.race([finished, Bun.sleep(25_000).then(() => performance.now() - t0)]);
  const cpu = process.cpuUsage(cpu0);
  lb.stop(true);
  sink.stop(true);
  return { test: "throughput", relay: kernel ? "sockmap" : "javascript", sent_mib: +(sent / MiB).toFixed(1), arrived_mib: +(got / MiB).toFixed(1), gbit_s: +((got * 8) / ms / 1e6).toFixed(2), process_cpu_s: +((cpu.user + cpu.system) / 1e6).toFixed(2) };
}

async function backpressure(kernel: boolean): Promise<Record<string, unknown>> {
  const stalled = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => s.pause(), data() {} } });
  const lb = relay(stalled.port, kernel);
  const chunk = Buffer.alloc(4 * MiB, 7);
  let written = 0;
  const stopAt = Date.now() + 4000;
  const mem0 = memAvailable();
  let lowest = mem0;
  const watch = setInterval(() => (lowest = Math.min(lowest, memAvailable())), 100);
  const pump = (s: Socket<unknown>) => {
    while (Date.now() < stopAt) {
      const n = s.write(chunk);
      written += Math.max(n, 0);
      if (n < chunk.length) return;
    }
  };
  const client = await Bun.connect({ hostname: "127.0.0.1", port: lb.port, socket: { open: pump, drain: pump, data() {} } });
  await Bun.sleep(4500);
  clearInterval(watch);
  client.terminate();
  lb.stop(true);
  stalled.stop(true);
  await Bun.sleep(1000); // let the kernel free what it held before the next run
  return { test: "backpressure", relay: kernel ? "sockmap" : "javascript", client_wrote_mib: +(written / MiB).toFixed(1), mem_available_drop_mib: +((mem0 - lowest) / MiB).toFixed(1) };
}

for (const kernel of [false, true]) {
  console.log(JSON.stringify(await throughput(kernel)));
  console.log(JSON.stringify(await backpressure(kernel)));
}
process.exit(0);
