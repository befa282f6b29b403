/**
 * A process that holds a new namespace open for the run: `unshare FLAGS -- sh -c 'read _'`
 * waits on its stdin, so when cpm exits, however it exits, the pipe closes and the namespace
 * (with whatever was mounted or mapped in it) goes away. Used for the build's mount namespace
 * (overlay.ts) and user namespace (sandbox.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';

export class NamespaceHolder {
  private constructor(
    private readonly child: ChildProcess,
    /** Whether the holder's namespace differs from cpm's (unshare got there within ~1 s). */
    readonly entered: boolean,
  ) {}

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Starts the holder and waits until its `kind` namespace (a /proc/PID/ns name: mnt, user)
   * is no longer cpm's; undefined when unshare cannot be started.
   */
  static async start(flags: string[], kind: string): Promise<NamespaceHolder | undefined> {
    const child = spawn('unshare', [...flags, '--', 'sh', '-c', 'read _ || true'], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    const spawned = await new Promise<boolean>((resolve) => {
      child.once('spawn', () => resolve(true));
      child.once('error', () => resolve(false));
    });
    if (!spawned) return undefined;
    // unshare execs sh once the namespace exists: wait until the pid's namespace differs.
    const self = await fsp.readlink(`/proc/self/ns/${kind}`);
    let entered = false;
    for (let i = 0; i < 200 && !entered; i++) {
      const ns = await fsp.readlink(`/proc/${child.pid}/ns/${kind}`).catch(() => self);
      entered = ns !== self;
      if (!entered) await new Promise((r) => setTimeout(r, 5));
    }
    return new NamespaceHolder(child, entered);
  }

  /** Neither the holder nor its pipe keeps cpm alive (the pipe is a Socket, which has unref). */
  detach(): void {
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  }

  close(): void {
    this.child.stdin?.end();
    this.child.kill();
  }
}
