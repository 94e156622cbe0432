/**
 * How far two bench runs (bench.ts JSON files) disagree, per column, over the buckets and
 * weight types both measured: `|a / b - 1|`, the worst of each column and where it is.
 *
 *   deno run --allow-read bench/agreement.ts <short run.json> <full run.json>
 *
 * @module
 */
import type { Row } from "./row.ts";

/** The timed columns of a bench row. */
const COLUMNS = ["tunedUs", "defaultUs", "bestSingleUs", "unfusedUs", "fusedStageUs"] as const;

/** A column's worst disagreement between two runs. */
export interface Disagreement {
  column: (typeof COLUMNS)[number];
  /** Percent, |a / b - 1| * 100; 0 when no bucket has the column in both. */
  worstPct: number;
  /** Where: "dtype m", and the two times. */
  at: string;
}

/**
 * The worst disagreement per column between rows of two runs, matched by weight type and m.
 *
 * @example
 * ```ts
 * import { disagreements } from "./agreement.ts";
 * const row = { dtype: "f16" as const, m: 1, tunedUs: 10, mode: "fused", fusedConfig: "a",
 *   batchedConfig: null, fusedStageUs: 8, defaultUs: 20, bestSingleUs: null, unfusedUs: 30,
 *   floorUs: null, tflops: 1, gbps: 1 };
 * const [tuned] = disagreements([row], [{ ...row, tunedUs: 10.5 }]);
 * if (Math.abs(tuned.worstPct - 100 / 21) > 1e-9) throw new Error(String(tuned.worstPct));
 * ```
 */
export function disagreements(a: readonly Row[], b: readonly Row[]): Disagreement[] {
  return COLUMNS.map((column) => {
    let worst: Disagreement = { column, worstPct: 0, at: "-" };
    for (const r of a) {
      const other = b.find((o) => o.dtype === r.dtype && o.m === r.m);
      const x = r[column], y = other?.[column];
      if (typeof x !== "number" || typeof y !== "number") continue;
      const pct = Math.abs(x / y - 1) * 100;
      if (pct > worst.worstPct) {
        worst = {
          column,
          worstPct: pct,
          at: `${r.dtype} m=${r.m}: ${x.toFixed(1)} vs ${y.toFixed(1)} us`,
        };
      }
    }
    return worst;
  });
}

if (import.meta.main) {
  const [a, b] = Deno.args;
  if (!a || !b) {
    console.error("usage: deno run --allow-read bench/agreement.ts <a.json> <b.json>");
    Deno.exit(2);
  }
  const rows = async (path: string) =>
    (JSON.parse(await Deno.readTextFile(path)) as { rows: Row[] }).rows;
  const found = disagreements(await rows(a), await rows(b));
  for (const d of found) {
    console.log(`${d.column.padEnd(13)} worst ${d.worstPct.toFixed(1)}%  (${d.at})`);
  }
  console.log(
    `agreement: worst ${
      Math.max(...found.map((d) => d.worstPct)).toFixed(1)
    }% over ${COLUMNS.length} columns`,
  );
}
