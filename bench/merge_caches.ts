/**
 * Merges copies of one GPU's cache file into it, bucket by bucket, the faster staying
 * (`cache/merge.ts`): two `run` calls of `bench/gpu_tune.sh` each return the whole file as it was
 * when their call began, so the second copy lacks what the first call tuned.
 *
 *   deno run -A bench/merge_caches.ts cache/<gpu>.json <returned copy>.json...
 *
 * @module
 */
import { loadCacheFile, saveCacheEntry } from "../cache/store.ts";

/**
 * Merges every entry of each of `others` into the cache file at `target` (created if missing).
 *
 * @returns The keys of the entries that changed, in the order first changed.
 * @throws {CacheFormatError} If a file is corrupt or a copy belongs to another GPU.
 * @throws {Deno.errors.NotFound} If a copy is missing.
 */
export async function mergeCacheFiles(target: string, others: string[]): Promise<string[]> {
  const changed = new Set<string>();
  let merged = await loadCacheFile(target);
  for (const path of others) {
    const file = await loadCacheFile(path);
    if (!file) throw new Deno.errors.NotFound(`Cannot merge "${path}": there is no such file`);
    for (const [key, entry] of Object.entries(file.entries)) {
      const before = JSON.stringify(merged?.entries[key]);
      merged = await saveCacheEntry(target, file.adapter, key, entry);
      if (JSON.stringify(merged.entries[key]) !== before) changed.add(key);
    }
  }
  return [...changed];
}

if (import.meta.main) {
  const [target, ...others] = Deno.args;
  if (!target?.endsWith(".json") || others.length === 0) {
    console.error("usage: deno run -A bench/merge_caches.ts cache/<gpu>.json <copy>.json...");
    Deno.exit(2);
  }
  for (const key of await mergeCacheFiles(target, others)) console.log(`merged ${key}`);
}
