/**
 * A small seeded random generator, so that test data, sampled configs and random search are
 * reproducible from the seed a run prints.
 *
 * @module
 */

/** Returns a generator of floats in [0, 1) for a 32-bit seed (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random non-zero values in [-1, -1/8] and [1/8, 1]: no zero hides a missing term. */
export function randomNonZero(length: number, random: () => number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    const v = 0.125 + 0.875 * random();
    out[i] = random() < 0.5 ? -v : v;
  }
  return out;
}

/** Fisher-Yates shuffle of a copy. */
export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
