/**
 * Shared test helpers (not a test file itself).
 *
 * @module
 */
import type { GemvConfig, TileConfig } from "../kernels/config.ts";
import { DEFAULT_SPACE, enumerateSpace } from "../kernels/space.ts";

/** Runs `fn` with a fresh temporary directory, removed afterwards. */
export async function withTempDir(prefix: string, fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A gemv config: the first of the default space (so knobs added later get a value), with
 * nc 4, lanes 16, rm 1, vec 4 and no subgroups, then `overrides`.
 */
export function gemvConfig(overrides: Partial<GemvConfig> = {}): GemvConfig {
  const first = enumerateSpace({ gemv: DEFAULT_SPACE.gemv }).find((c) => c.family === "gemv");
  return {
    ...(first as GemvConfig),
    nc: 4,
    lanes: 16,
    rm: 1,
    vec: 4,
    subgroup: false,
    ...overrides,
  };
}

/** A tile config: bm 32, bn 32, bk 8, rm 4, rn 4, vec 4, then `overrides`. */
export function tileConfig(overrides: Partial<TileConfig> = {}): TileConfig {
  return { family: "tile", bm: 32, bn: 32, bk: 8, rm: 4, rn: 4, vec: 4, ...overrides };
}
