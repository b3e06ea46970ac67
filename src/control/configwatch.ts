/**
 * Reload on a config file change, without a signal: how a Kubernetes ConfigMap update reaches featherlb.
 *
 * kubelet never writes a mounted ConfigMap file in place. It writes the new contents into a fresh
 * directory, points a temporary symlink at it and renames that over `..data` (one atomic rename), so
 * `lb.yaml → ..data/lb.yaml` resolves to the new file at once; the old directory is then deleted. An
 * inotify watch on the file would follow the old inode into the deleted directory and go quiet, so this
 * polls instead: every `interval` it reads the file by its path (through every symlink) and hashes it.
 * Reading a file of a few KiB once a second costs nothing next to a health check.
 *
 * Three digests decide (one event loop, no locks):
 *  - `attempted`: the contents last handed to a reload, by this watcher or by SIGHUP (the runtime calls
 *    `sync()` as a reload starts). Contents equal to it are never reloaded again, so a file that fails
 *    to load is logged once, not every second, and a SIGHUP right after an edit is not doubled.
 *  - `pending`: new contents seen once. They are reloaded when the next read sees them unchanged, so a
 *    file an editor is still writing in place (truncated, half-written) is not loaded mid-write.
 *  - the read itself; a file that cannot be read (gone for a moment, permissions) waits for the next tick.
 */
import { readFileSync } from "node:fs";
import type { Logger } from "./log.ts";

export class ConfigWatcher {
  private attempted: string | undefined;
  private pending: string | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Watch `path`; `interval()` is read before each check (a reload may change it; 0 = off, looked at
   * again a second later). `reload` is the runtime's reload, the same as on SIGHUP.
   */
  constructor(
    private readonly path: string,
    private readonly interval: () => number,
    private readonly reload: () => Promise<void>,
    private readonly log: Logger,
  ) {
    this.sync();
    this.schedule();
  }

  /** A reload is starting (SIGHUP or this watcher): its contents count as attempted. */
  sync(): void {
    this.attempted = this.digest();
    this.pending = undefined;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    this.timer = setTimeout(() => void this.check(), this.interval() || 1000);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    try {
      if (this.interval() > 0) {
        const now = this.digest();
        if (now === undefined || now === this.attempted) this.pending = undefined;
        else if (now !== this.pending) this.pending = now;
        else {
          this.log.info("config file changed, reloading", { path: this.path });
          await this.reload(); // calls sync(): `attempted` becomes these contents whatever the outcome
        }
      }
    } finally {
      // Rescheduled even if the reload threw (a bug: the process logs unhandled rejections), unless stopped.
      if (this.timer !== undefined) this.schedule();
    }
  }

  private digest(): string | undefined {
    try {
      return new Bun.CryptoHasher("sha256").update(readFileSync(this.path)).digest("hex");
    } catch {
      return undefined;
    }
  }
}
