/**
 * The relay thread (a Bun Worker of the proxy thread that owns it: index.ts). Its first message is
 * the shared table; from then on it runs Pump's loop, which blocks in epoll_wait, so it reads nothing
 * more from postMessage: commands come through the table's ring and its eventfd. It posts the slots it
 * finished. An exception ends the thread; the owner then resets the connections it held (index.ts).
 */
import { Pump } from "./pump.ts";
import { SpliceTable, type TableInit } from "./table.ts";

declare const self: Worker;

/** The owner's first (and only) message. */
export interface RelayThreadInit {
  table: TableInit;
  pipeSize: number;
}

self.onmessage = (event: MessageEvent<RelayThreadInit>) => {
  self.onmessage = null;
  const { table, pipeSize } = event.data;
  const pump = new Pump(SpliceTable.attach(table), pipeSize, (finished) => self.postMessage(finished));
  pump.run(); // blocks until told to stop
  process.exit(0); // this thread only
};
