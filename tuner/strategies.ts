/**
 * Search strategies, each one function of the `Strategy` signature (search.ts):
 * - `exhaustive`: every candidate, in the space's order;
 * - `random`: a seeded uniform sample;
 * - `local`: the hints (neighbouring buckets' winners) and a few random configs first, then
 *   always the untried one-knob neighbours of the best config so far (next best when those are
 *   used up), and a random restart when no evaluated config has an untried neighbour;
 * - `guided` (the default): the hints, a random config of each kernel family and a few more
 *   first, then the untried config within two knob steps of the best that a least-squares model
 *   of log time (additive over the knobs' values, and a GEMV's values per load trip) predicts
 *   fastest; every fourth pick, the one it predicts fastest anywhere.
 *
 * @module
 */
import type { KernelConfig } from "../kernels/config.ts";
import { configName } from "../kernels/config.ts";
import { shuffled } from "./random.ts";
import type { Evaluation, Search, SearchContext, Strategy } from "./search.ts";

/** A search that hands out a fixed order. */
function inOrder(order: readonly KernelConfig[]): Search {
  let next = 0;
  return {
    ask: (n) => order.slice(next, next += n),
    tell: () => {},
  };
}

/** Every candidate, in the order the space lists them. */
export const exhaustive: Strategy = ({ candidates }) => inOrder(candidates);

/** Candidates in a seeded random order: with a trial budget, a uniform sample. */
export const random: Strategy = ({ candidates, random }) => inOrder(shuffled(candidates, random));

/** Random configs the local searches start from, besides the hints. */
const START = 4;

/** The sorted values of every numeric knob among the candidates, by "family.knob". */
function knobSteps(candidates: readonly KernelConfig[]): Map<string, number[]> {
  const steps = new Map<string, Set<number>>();
  for (const c of candidates) {
    for (const [knob, value] of Object.entries(c)) {
      if (typeof value !== "number") continue;
      const key = `${c.family}.${knob}`;
      if (!steps.has(key)) steps.set(key, new Set());
      steps.get(key)!.add(value);
    }
  }
  return new Map([...steps].map(([k, v]) => [k, [...v].sort((a, b) => a - b)]));
}

/**
 * Knob distance: steps apart in each numeric knob's sorted values, summed, plus 1 for each
 * differing boolean knob; configs of different families are far apart.
 */
function distance(a: KernelConfig, b: KernelConfig, steps: Map<string, number[]>): number {
  if (a.family !== b.family) return 100;
  let d = 0;
  for (const [knob, value] of Object.entries(a)) {
    const other = (b as unknown as Record<string, unknown>)[knob];
    if (other === value) continue;
    if (typeof value === "boolean") d += 1;
    else {
      const values = steps.get(`${a.family}.${knob}`)!;
      d += Math.abs(values.indexOf(value as number) - values.indexOf(other as number));
    }
  }
  return d;
}

/** What a local search's `pick` sees. */
interface Around {
  /** An evaluated config, best first, and the untried configs within reach of it (or, on an
   * exploring pick, every untried config). */
  best: Evaluation;
  near: KernelConfig[];
  /** Every successful evaluation so far. */
  timed: readonly Evaluation[];
  steps: Map<string, number[]>;
}

/** How a search around the best walks. */
interface Walk {
  /** Knob steps from an evaluated config that count as near it. */
  reach: number;
  /** The configs asked first after the hints, taken from the candidates in random order. */
  opening: (order: readonly KernelConfig[]) => KernelConfig[];
  /** Chooses the next config among `near`. */
  pick: (around: Around) => KernelConfig;
  /** Every how many picks after the opening `pick` chooses among all untried configs. */
  explore?: number;
}

/**
 * A search that asks the hints and its opening first, then, for the best config so far (the
 * next best when it has nothing left within `reach` knob steps), the config `pick` chooses
 * among the untried ones in reach; a random untried config when no evaluated config has any
 * left. Every `explore`-th pick chooses among all untried configs instead.
 */
function aroundTheBest(
  { candidates, hints, random }: SearchContext,
  { reach, opening, pick, explore = 0 }: Walk,
): Search {
  const steps = knobSteps(candidates);
  const order = shuffled(candidates, random); // restarts, and ties
  const byName = new Map(candidates.map((c) => [configName(c), c]));
  const asked = new Set<string>();
  const timed: Evaluation[] = [];
  const start = [
    ...hints.filter((h) => byName.has(configName(h))).map((h) => byName.get(configName(h))!),
    ...opening(order),
  ];
  const untried = (c: KernelConfig) => !asked.has(configName(c));
  let picks = 0;
  const next = (): KernelConfig | undefined => {
    const first = start.find(untried);
    if (first) return first;
    const sorted = [...timed].sort((a, b) => a.medianUs! - b.medianUs!);
    if (explore > 0 && ++picks % explore === 0 && sorted.length > 0) {
      const near = order.filter(untried);
      if (near.length > 0) return pick({ best: sorted[0], near, timed, steps });
    }
    for (const best of sorted) {
      const near = order.filter((c) => untried(c) && distance(best.config, c, steps) <= reach);
      if (near.length > 0) return pick({ best, near, timed, steps });
    }
    return order.find(untried);
  };
  return {
    ask(n) {
      const out: KernelConfig[] = [];
      while (out.length < n) {
        const c = next();
        if (!c) break;
        asked.add(configName(c));
        out.push(c);
      }
      return out;
    },
    tell(results) {
      timed.push(...results.filter((r) => r.medianUs !== null));
    },
  };
}

/** Local search over one-knob neighbours of the best configs so far, in random order. */
export const local: Strategy = (context) =>
  aroundTheBest(context, {
    reach: 1,
    opening: (order) => order.slice(0, START),
    pick: ({ near }) => near[0],
  });

/** Random configs `guided` starts from, besides the hints (at least one of each family). */
const GUIDED_START = 8;
/** Every how many picks `guided` takes the predicted fastest config anywhere. */
const GUIDED_EXPLORE = 4;
/** Ridge weight of the model's least squares: pulls knob values seen rarely toward none. */
const RIDGE = 1;

/** The first config of each family in `order`, then the next ones up to `count` in all. */
function everyFamily(order: readonly KernelConfig[], count: number): KernelConfig[] {
  const families = [...new Set(order.map((c) => c.family))];
  const out = families.map((f) => order.find((c) => c.family === f)!);
  return [...out, ...order.filter((c) => !out.includes(c)).slice(0, count - out.length)];
}

/**
 * What the model sees of a config: its family, each knob's value in that family, and for a GEMV
 * the values each thread loads per trip (`cn` columns x `vec`), whose effect no sum over the two
 * knobs alone captures. On the H100 (tp4 f16, fused m = 4) `cn` 1 with `vec` 8 is 76% slower
 * than the best, `cn` 2 with `vec` 8; with this term, replay at 15% ends there more often (23 -> 16
 * of 40 seeds more than 3% off; NOTES.md).
 */
function features(c: KernelConfig): string[] {
  const knobs = Object.entries(c).filter(([k]) => k !== "family");
  const derived = c.family === "gemv" ? [`gemv.cn*vec=${c.cn * c.vec}`] : [];
  return [c.family, ...knobs.map(([k, v]) => `${c.family}.${k}=${v}`), ...derived];
}

/** Solves `a x = b` in place by Gaussian elimination with partial pivoting. */
function solve(a: number[][], b: number[]): number[] {
  const n = b.length;
  for (let col = 0; col < n; col++) {
    let p = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(a[r][col]) > Math.abs(a[p][col])) p = r;
    [a[col], a[p], b[col], b[p]] = [a[p], a[col], b[p], b[col]];
    for (let r = col + 1; r < n; r++) {
      const f = a[r][col] / a[col][col];
      for (let k = col; k < n; k++) a[r][k] -= f * a[col][k];
      b[r] -= f * b[col];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = b[r];
    for (let k = r + 1; k < n; k++) s -= a[r][k] * x[k];
    x[r] = s / a[r][r];
  }
  return x;
}

/**
 * Fits log time as the mean plus one term per feature (family, each knob's value, and the
 * GEMV's values per load trip) by ridge
 * least squares, and returns the predicted log time of any config; unseen features add nothing.
 */
export function fitLogTime(timed: readonly Evaluation[]): (c: KernelConfig) => number {
  const index = new Map<string, number>();
  for (const t of timed) {
    for (const f of features(t.config)) if (!index.has(f)) index.set(f, index.size);
  }
  const n = index.size;
  const a = Array.from({ length: n }, (_, i) => new Array<number>(n).fill(0).fill(RIDGE, i, i + 1));
  const b = new Array<number>(n).fill(0);
  const mean = timed.reduce((s, t) => s + Math.log(t.medianUs!), 0) / Math.max(1, timed.length);
  for (const t of timed) {
    const idx = features(t.config).map((f) => index.get(f)!);
    for (const i of idx) {
      for (const j of idx) a[i][j] += 1;
      b[i] += Math.log(t.medianUs!) - mean;
    }
  }
  const w = solve(a, b);
  return (c) => features(c).reduce((s, f) => s + (index.has(f) ? w[index.get(f)!] : 0), mean);
}

/**
 * Guided search: the hints, a random config of each family and more up to `GUIDED_START`
 * first; then, within two knob steps of the best config so far (the next best when none is
 * left), the untried config that a model fitted to every time so far (`fitLogTime`) predicts
 * fastest; every `GUIDED_EXPLORE`-th pick, the one predicted fastest anywhere. Chosen by
 * replay of the H100's exhaustive logs (README).
 */
export const guided: Strategy = (context) => {
  let model: ((c: KernelConfig) => number) | undefined;
  let fittedOn = -1;
  return aroundTheBest(context, {
    reach: 2,
    opening: (order) => everyFamily(order, GUIDED_START),
    explore: GUIDED_EXPLORE,
    pick: ({ near, timed }) => {
      if (fittedOn !== timed.length) [model, fittedOn] = [fitLogTime(timed), timed.length];
      return near.map((c) => ({ c, p: model!(c) })).sort((x, y) => x.p - y.p)[0].c;
    },
  });
};

/** Strategies by their `--strategy` name. */
export const STRATEGIES: Record<string, Strategy> = { exhaustive, random, local, guided };
