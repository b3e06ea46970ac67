import { expect, test } from "bun:test";
import { Cmd, Phase, SpliceTable } from "./table.ts";

test("the command ring hands over slots in order, across many wraps of its indexes", () => {
  const owner = SpliceTable.create(4, -1);
  const relay = SpliceTable.attach(owner.init);
  let expected = 0;
  // 4 slots: the ring has 8 entries and its head and tail count modulo 16; 1000 rounds wrap both often.
  for (let round = 0; round < 1000; round++) {
    const slot = round % 4;
    owner.queue(slot, 100 + slot, 200 + slot);
    if (round % 3 === 0) owner.command(slot, Cmd.abort);
    const taken = relay.take();
    expect(taken[0]).toBe(slot);
    expect(taken.length).toBe(round % 3 === 0 ? 2 : 1);
    expect(relay.phase(slot)).toBe(Phase.queued);
    expect(relay.sockets(slot)).toEqual([100 + slot, 200 + slot]);
    expect(relay.cmd(slot)).toBe(round % 3 === 0 ? Cmd.abort : Cmd.none);
    expected++;
  }
  expect(expected).toBe(1000);
  expect(relay.take()).toEqual([]);
});

test("a slot's descriptors are its two sockets, then its four pipe ends once made", () => {
  const t = SpliceTable.create(2, -1);
  t.queue(1, 7, 8);
  expect(t.descriptors(1)).toEqual([7, 8, -1, -1, -1, -1]);
  t.setPipes(1, [10, 11, 12, 13]);
  expect(t.descriptors(1)).toEqual([7, 8, 10, 11, 12, 13]);
  // Queuing the slot again (a new connection) forgets the old pipes.
  t.queue(1, 20, 21);
  expect(t.descriptors(1)).toEqual([20, 21, -1, -1, -1, -1]);
});
