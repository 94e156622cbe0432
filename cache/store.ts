/**
 * Reading and writing cache files on disk (Deno). Writes merge into what is on disk under a
 * lock file, then write a temporary file and rename it over the old one, so that readers see
 * either the old file or the new one, and two tuners writing at once both keep their results.
 *
 * @module
 */
import type { AdapterFingerprint, CacheEntry, CacheFile } from "./schema.ts";
import { CacheFormatError, emptyCache, parseCacheText } from "./schema.ts";

/**
 * Loads a cache file.
 *
 * @returns The file, or `undefined` if there is none.
 * @throws {CacheFormatError} If it exists but is not a valid cache file.
 */
export async function loadCacheFile(path: string): Promise<CacheFile | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  return parseCacheText(text, path);
}

/** A lock older than this is taken to be left by a killed process. */
const STALE_LOCK_MS = 120_000;

/** Runs `fn` while holding `path.lock`, waiting for other holders. */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T>,
  timeoutMs = 60_000,
): Promise<T> {
  const lock = `${path}.lock`;
  const started = Date.now();
  for (let wait = 5;; wait = Math.min(wait * 2, 200)) {
    try {
      const file = await Deno.open(lock, { createNew: true, write: true });
      await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
      file.close();
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      const age = await Deno.stat(lock).then(
        (s) => Date.now() - (s.mtime?.getTime() ?? 0),
        () => 0,
      );
      if (age > STALE_LOCK_MS) {
        await Deno.remove(lock).catch(() => {});
        continue;
      }
      if (Date.now() - started > timeoutMs) {
        throw new Error(`Cannot lock "${path}": "${lock}" has been held for over ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }
  try {
    return await fn();
  } finally {
    await Deno.remove(lock).catch(() => {});
  }
}

/** Writes text to a temporary file beside `path`, then renames it over `path`. */
export async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Stores one entry in a cache file, keeping every other entry on disk, atomically.
 *
 * @throws {CacheFormatError} If the file on disk is corrupt or belongs to another GPU; it is
 * left as it is.
 */
export async function saveCacheEntry(
  path: string,
  adapter: AdapterFingerprint,
  key: string,
  entry: CacheEntry,
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
    file.entries[key] = entry;
    const sorted = Object.fromEntries(
      Object.entries(file.entries).sort(([a], [b]) => a.localeCompare(b)),
    );
    await writeAtomic(path, JSON.stringify({ ...file, entries: sorted }, null, 2) + "\n");
    return file;
  });
}
