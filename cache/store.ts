/**
 * Reading and writing cache files on disk (Deno). Writes merge into what is on disk under a
 * lock file, then write a temporary file and rename it over the old one, so that readers see
 * either the old file or the new one, and two tuners writing at once both keep their results.
 *
 * @module
 */
import type { AdapterFingerprint, BucketResult, CacheEntry, CacheFile } from "./schema.ts";
import { mergeEntries } from "./merge.ts";
import { CacheFormatError, emptyCache, parseCacheText } from "./schema.ts";

/**
 * Loads a cache file.
 *
 * @returns The file, or `undefined` if there is none.
 * @throws {CacheFormatError} If it exists but is not a valid cache file.
 */
export async function loadCacheFile(path: string): Promise<CacheFile | undefined> {
  const text = await readTextIfPresent(path);
  return text === undefined ? undefined : parseCacheText(text, path);
}

/**
 * A text file's contents, or `undefined` where there is no file (other errors are thrown).
 *
 * @example
 * ```ts
 * import { readTextIfPresent } from "./store.ts";
 * if (await readTextIfPresent("no/such/file.json") !== undefined) throw new Error("a file");
 * ```
 */
export async function readTextIfPresent(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * A lock not refreshed for this long is taken to be left by a killed process; holders refresh
 * theirs every sixth of it (they hold it for milliseconds, but a slow disk or a large file may
 * take longer).
 */
export const STALE_LOCK_MS = 30_000;
/** A claim to break a stale lock older than this was left by a killed breaker. */
const STALE_CLAIM_MS = 10_000;

/** The text of a lock file and its modification time, read from one open file. */
interface LockSeen {
  text: string;
  mtime: number;
}

async function readLock(lock: string): Promise<LockSeen | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(lock, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    const info = await file.stat();
    const parts: Uint8Array[] = [];
    const chunk = new Uint8Array(512);
    for (let n = await file.read(chunk); n !== null; n = await file.read(chunk)) {
      parts.push(chunk.slice(0, n));
    }
    const text = new TextDecoder().decode(
      parts.length === 1 ? parts[0] : new Uint8Array(parts.flatMap((p) => [...p])),
    );
    return { text, mtime: info.mtime?.getTime() ?? 0 };
  } finally {
    file.close();
  }
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "-"; // no --allow-sys: the host is only for people reading the lock
  }
}

/** Creates `lock` holding `text`, all at once (a temporary file linked into place). */
async function tryCreateLock(lock: string, text: string): Promise<boolean> {
  const tmp = `${lock}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeTextFile(tmp, text);
    await Deno.link(tmp, lock);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return false;
    // No hard links here (some network or FAT file systems): create it in place.
    try {
      const file = await Deno.open(lock, { createNew: true, write: true });
      try {
        await file.write(new TextEncoder().encode(text));
      } finally {
        file.close();
      }
      return true;
    } catch (e2) {
      if (e2 instanceof Deno.errors.AlreadyExists) return false;
      throw e2;
    }
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

/**
 * Removes a lock judged stale, such that of the waiters that judged it stale only one does,
 * and none removes a lock taken since: the breaker first claims the stale lock (a file named
 * after its text and time, created exclusively), checks the lock is still the one it judged,
 * and renames it away to a name of its own; if what it moved is not the lock it judged (its
 * holder released it and another took it in between, which only a holder that stalled for the
 * stale age can cause), it links it back.
 */
async function breakStaleLock(lock: string, seen: LockSeen): Promise<void> {
  const id = Array.from(
    new Uint8Array(
      await crypto.subtle.digest(
        "SHA-256",
        new TextEncoder().encode(`${seen.mtime}\n${seen.text}`),
      ),
    ).subarray(0, 8),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const claim = `${lock}.break-${id}`;
  try {
    (await Deno.open(claim, { createNew: true, write: true })).close();
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    // Another waiter is breaking it; a claim left by a killed breaker is cleared after a while.
    const age = await Deno.stat(claim).then((s) => Date.now() - (s.mtime?.getTime() ?? 0), () => 0);
    if (age > STALE_CLAIM_MS) await Deno.remove(claim).catch(() => {});
    return;
  }
  try {
    const same = (x: LockSeen | undefined) => x?.text === seen.text && x.mtime === seen.mtime;
    if (!same(await readLock(lock))) return; // released or broken already
    const grave = `${lock}.${crypto.randomUUID().slice(0, 8)}.stale`;
    try {
      await Deno.rename(lock, grave);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    if (!same(await readLock(grave))) await Deno.link(grave, lock).catch(() => {});
    await Deno.remove(grave).catch(() => {});
  } finally {
    await Deno.remove(claim).catch(() => {});
  }
}

/**
 * Runs `fn` while holding `path.lock`, waiting for other holders.
 *
 * The lock file names its holder (pid, host and a random token), and the holder refreshes its
 * time while it holds it. A lock not refreshed for `staleMs` was left by a killed process and
 * is broken by one waiter only (see `breakStaleLock`), so two waiters cannot each remove the
 * lock the other just took.
 *
 * @param staleMs Age of an unrefreshed lock that is taken to be abandoned (tests shorten it).
 * @throws {Error} If the lock stays held (and refreshed) for longer than `timeoutMs`.
 */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T>,
  timeoutMs = 60_000,
  staleMs = STALE_LOCK_MS,
): Promise<T> {
  const lock = `${path}.lock`;
  const token = `${Deno.pid} ${hostName()} ${crypto.randomUUID()}\n`;
  const started = Date.now();
  for (let wait = 5;; wait = Math.min(wait * 2, 200)) {
    if (await tryCreateLock(lock, token)) break;
    const seen = await readLock(lock);
    if (!seen) continue; // released in between
    if (Date.now() - seen.mtime > staleMs) {
      await breakStaleLock(lock, seen);
      continue;
    }
    if (Date.now() - started > timeoutMs) {
      throw new Error(
        `Cannot lock "${path}": "${lock}" has been held for over ${timeoutMs} ms (by ${
          seen.text.trim() || "an unnamed holder"
        }); if no tuner is running, remove it`,
      );
    }
    await new Promise((r) => setTimeout(r, wait));
  }
  const refresh = setInterval(() => {
    const now = new Date();
    Deno.utime(lock, now, now).catch(() => {});
  }, staleMs / 6);
  try {
    return await fn();
  } finally {
    clearInterval(refresh);
    // Remove the lock only if it is still ours (it is, unless this process stalled for staleMs).
    if ((await readLock(lock))?.text === token) await Deno.remove(lock).catch(() => {});
  }
}

/**
 * Writes text to a temporary file beside `path`, flushes it to disk, then renames it over
 * `path`: a reader, or a process killed at any moment, sees the old file or the new one.
 */
export async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    const file = await Deno.open(tmp, { createNew: true, write: true });
    try {
      const bytes = new TextEncoder().encode(text);
      for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
      await file.syncData(); // so that a crash after the rename cannot leave it empty
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Stores one entry in a cache file, keeping every other entry on disk, atomically. The entry is
 * merged into the one on disk (see merge.ts): per bucket the faster result stays, so that no
 * bucket gets slower or lost, also when two tuners of one problem write at once.
 *
 * @param judged The stored buckets the run timed beside its own winners, by bucket: where the
 * file still holds such a bucket, the run's bucket replaces it (see merge.ts).
 * @throws {CacheFormatError} If the file on disk is corrupt or belongs to another GPU; it is
 * left as it is.
 */
export async function saveCacheEntry(
  path: string,
  adapter: AdapterFingerprint,
  key: string,
  entry: CacheEntry,
  judged: Record<string, BucketResult> = {},
): Promise<CacheFile> {
  const dir = path.replace(/[/\\][^/\\]*$/, "");
  if (dir !== path) await Deno.mkdir(dir, { recursive: true });
  return await withFileLock(path, async () => {
    const file = (await loadCacheFile(path)) ?? emptyCache(adapter);
    if (JSON.stringify(file.adapter) !== JSON.stringify(adapter)) {
      throw new CacheFormatError(
        path,
        "adapter",
        `is ${JSON.stringify(file.adapter)}, not this GPU ${JSON.stringify(adapter)}`,
      );
    }
    file.entries[key] = mergeEntries(file.entries[key], entry, judged);
    const sorted = Object.fromEntries(
      Object.entries(file.entries).sort(([a], [b]) => a.localeCompare(b)),
    );
    await writeAtomic(path, JSON.stringify({ ...file, entries: sorted }, null, 2) + "\n");
    return file;
  });
}
