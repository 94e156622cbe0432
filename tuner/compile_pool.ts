/**
 * Compiles on worker threads ahead of the tuner's own compiles. Deno's wgpu compiles a
 * pipeline on the thread that asks for it, so the tuner's compiles run one at a time. Each
 * worker opens its own device and compiles the same WGSL; the driver keeps the result in its
 * shader cache, and the tuner's compile of that source then only reads it. Measured on an H100
 * (bench/compile_probe.ts, 40 tp4 f16 configs): 77-98 ms per compile on one thread; 8 workers
 * compile the 40 in 1.3 s, after which the tuner's thread takes 8.5 ms each. Where a driver
 * keeps no such cache the pool only costs CPU: the tuner's compile is the one that counts.
 *
 * Threads, not processes: NVIDIA's cache is shared at once within a process, while worker
 * processes made the tuner slower (compile waits 129 s against 31 s; their entries reach the
 * disk too late). Ending threads is delicate there (bench/pool_exit_probe.ts, 4 runs each):
 * `terminate()` on threads done compiling hung the process 4 times in 4, on threads still
 * compiling it crashed or hung it 4 in 4; threads that finished their source and then closed
 * themselves (with or without destroying their device) ended cleanly 8 in 8 where the process
 * then ended on its own, as did `Deno.exit()` with idle threads 4 in 4; but the tuner's
 * `Deno.exit()` right after its threads closed themselves crashed it (1 run in 1). So the pool
 * never terminates a thread: {@linkcode CompilePool.drain} lets every source in flight finish
 * and leaves the threads idle, for a process about to call `Deno.exit()` (the CLI);
 * {@linkcode CompilePool.close} then asks each thread to end itself, for a process that goes
 * on (tests).
 *
 * Two queues: sources the tuner waits for ({@linkcode CompilePool.warm}) go before sources it
 * will probably want later ({@linkcode CompilePool.prefetch}). The tuner itself sees only the
 * `CompileAhead` interface (gpu_runner.ts): the pool is made, drained and closed by its caller.
 *
 * @module
 */
import type { CompileJob } from "./compile_worker.ts";

type WorkerMessage = {
  id?: number;
  ok?: boolean;
  ready?: boolean;
  failed?: string;
  closed?: boolean;
};

/** One source: queued, on a worker, or done (`ok` if it compiled there). */
interface Job {
  id: number;
  name: string;
  code: string;
  state: "queued" | "running" | "done";
  ok: boolean;
  /** In the urgent queue: the tuner waits for it. */
  urgent: boolean;
  waiters: ((ok: boolean) => void)[];
}

/** A worker thread and the source it compiles now. */
interface Slot {
  worker: Worker;
  state: "starting" | "ready" | "gone";
  job?: Job;
  /** Resolves once the worker opened its device, or failed to. */
  started: Promise<void>;
  /** Resolves when the worker is done with its current source (renewed for each). */
  idle: Promise<void>;
  becomeIdle: () => void;
  /** Resolves once the worker said it ends (or failed). */
  closed: Promise<void>;
}

/**
 * Worker threads that compile WGSL ahead of the tuner (see the module documentation).
 *
 * @example
 * ```ts
 * import { CompilePool } from "./compile_pool.ts";
 *
 * const pool = new CompilePool(1);
 * const compiled = await pool.warm("@compute @workgroup_size(1)\nfn main() {}\n", "empty");
 * if (compiled !== true) throw new Error("a worker compiled it");
 * await pool.close();
 * ```
 */
export class CompilePool {
  #slots: Slot[] = [];
  #jobs = new Map<string, Job>();
  #urgent: Job[] = [];
  #later: Job[] = [];
  #nextId = 0;
  #closing = false;

  /**
   * Starts the worker threads; each opens its device in the background.
   *
   * @param size Worker threads, at least 1.
   * @param workerUrl The worker module (default compile_worker.ts beside this file).
   * @throws {RangeError} If size is not a positive integer.
   */
  constructor(size: number, workerUrl = new URL("./compile_worker.ts", import.meta.url)) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`Compile pool size must be a positive integer, got ${size}`);
    }
    for (let i = 0; i < size; i++) this.#slots.push(this.#start(workerUrl));
  }

  /**
   * Compiles a source as soon as a worker is free, before any prefetched one.
   *
   * @returns A promise that never rejects: `true` once a worker compiled the source, `false`
   * where none did (no worker could open a device, the pool closed, or the source does not
   * compile: the tuner's own compile reports why).
   */
  warm = (code: string, name = "kernel"): Promise<boolean> => {
    if (this.#closing || this.#slots.every((s) => s.state === "gone")) {
      return Promise.resolve(false);
    }
    const job = this.#jobs.get(code) ?? this.#add(code, name);
    if (job.state === "done") return Promise.resolve(job.ok);
    if (!job.urgent && job.state === "queued") {
      job.urgent = true;
      this.#urgent.push(job);
    }
    const done = new Promise<boolean>((resolve) => job.waiters.push(resolve));
    this.#pump();
    return done;
  };

  /** Queues a source to compile when no {@linkcode warm}ed one waits; known sources are skipped. */
  prefetch = (code: string, name = "kernel"): void => {
    if (this.#closing || this.#jobs.has(code)) return;
    this.#later.push(this.#add(code, name));
    this.#pump();
  };

  /** Sources compiled on a worker so far, and how many of them did compile. */
  get compiled(): { done: number; ok: number } {
    const done = [...this.#jobs.values()].filter((j) => j.state === "done");
    return { done: done.length, ok: done.filter((j) => j.ok).length };
  }

  /**
   * Stops compiling: sources still queued resolve `false` at once, and the sources on workers
   * finish (up to `graceMs` each). The threads stay, idle, until {@linkcode close} or the
   * process's exit: a process that ends by `Deno.exit()` should drain its pool first, and need
   * not close it (see the module documentation).
   */
  async drain(graceMs = 10_000): Promise<void> {
    this.#closing = true;
    for (const job of [...this.#urgent, ...this.#later]) this.#finish(job, false);
    this.#urgent = [];
    this.#later = [];
    await Promise.all(this.#slots.map(async (slot) => {
      if (slot.state === "starting") await within(slot.started, graceMs, undefined);
      if (slot.job) await within(slot.idle, graceMs, undefined);
    }));
  }

  /**
   * Drains the pool, then asks each worker to destroy its device and end itself (see the module
   * documentation); one that does not answer in `graceMs` is left to end with the process.
   */
  async close(graceMs = 10_000): Promise<void> {
    await this.drain(graceMs);
    await Promise.all(this.#slots.map(async (slot) => {
      if (slot.state === "ready" && !slot.job) {
        slot.worker.postMessage({ close: true });
        await within(slot.closed, graceMs, undefined);
      }
      this.#drop(slot);
    }));
  }

  #start(workerUrl: URL): Slot {
    const worker = new Worker(workerUrl, { type: "module" });
    let begun!: () => void, over!: () => void;
    const slot: Slot = {
      worker,
      state: "starting",
      started: new Promise((resolve) => begun = resolve),
      idle: Promise.resolve(),
      becomeIdle: () => {},
      closed: new Promise((resolve) => over = resolve),
    };
    const ended = () => (begun(), over());
    worker.onmessage = (e: MessageEvent<WorkerMessage>) => {
      if (e.data.id !== undefined) {
        if (slot.job) this.#finish(slot.job, e.data.ok === true);
        slot.job = undefined;
        slot.becomeIdle();
      } else if (e.data.closed) {
        return ended();
      } else if (e.data.ready && slot.state === "starting") {
        slot.state = "ready";
        begun();
      } else {
        ended();
        return this.#drop(slot); // it could not open a device
      }
      if (!this.#closing) this.#pump();
    };
    worker.onerror = (e) => {
      e.preventDefault();
      ended();
      this.#drop(slot);
    };
    return slot;
  }

  #add(code: string, name: string): Job {
    const job: Job = {
      id: this.#nextId++,
      name,
      code,
      state: "queued",
      ok: false,
      urgent: false,
      waiters: [],
    };
    this.#jobs.set(code, job);
    return job;
  }

  /** Gives each idle worker the next queued source, urgent ones first. */
  #pump(): void {
    for (const slot of this.#slots) {
      if (slot.state !== "ready" || slot.job) continue;
      const job = this.#next();
      if (!job) return;
      job.state = "running";
      slot.job = job;
      slot.idle = new Promise((resolve) => slot.becomeIdle = resolve);
      slot.worker.postMessage({ id: job.id, name: job.name, code: job.code } satisfies CompileJob);
    }
  }

  #next(): Job | undefined {
    for (const queue of [this.#urgent, this.#later]) {
      while (queue.length > 0) {
        const job = queue.shift()!;
        if (job.state === "queued") return job;
      }
    }
    return undefined;
  }

  #finish(job: Job, ok: boolean): void {
    if (job.state === "done") return;
    job.state = "done";
    job.ok = ok;
    job.code = ""; // the map keeps it as the key; the job need not
    for (const resolve of job.waiters.splice(0)) resolve(ok);
  }

  /**
   * Stops using a worker (it failed, ended, or the pool closes); with none left, nothing waits.
   * It is not terminated: see the module documentation.
   */
  #drop(slot: Slot): void {
    if (slot.state === "gone") return;
    slot.state = "gone";
    if (slot.job) this.#finish(slot.job, false);
    slot.job = undefined;
    slot.becomeIdle();
    if (this.#slots.every((s) => s.state === "gone")) {
      for (const job of [...this.#urgent, ...this.#later]) this.#finish(job, false);
      this.#urgent = [];
      this.#later = [];
    } else if (!this.#closing) {
      this.#pump();
    }
  }
}

/** A promise's value, or `fallback` if it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<T>((resolve) => timer = setTimeout(() => resolve(fallback), ms));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
