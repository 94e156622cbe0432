/**
 * The bench's JSON report on disk. A run over some weight types keeps the rows of the other
 * weight types that an earlier run of the same problem on the same GPU wrote to the same file,
 * so that a run of `--dtype bf16` does not erase the f32 rows measured before it. Kept rows are
 * listed in `meta.kept` with the date they were measured.
 *
 * @module
 */
import { z } from "zod";
import { readTextIfPresent } from "../cache/store.ts";
import type { Row } from "./row.ts";

/** The fields a report must have for a run to keep its rows; the rest pass through unchecked. */
const reportShape = z.object({
  meta: z.object({ problem: z.string(), date: z.string() }),
  summaries: z.array(z.string()),
  rows: z.array(z.object({ dtype: z.string() })),
});

/** Weight types whose rows came from an earlier run, and when that run measured them. */
export interface KeptRows {
  /** The weight type, as in `Row.dtype` (f16-fast for f16 with precision "fast"). */
  dtype: string;
  /** The ISO date of the run that measured them. */
  date: string;
}

/** What a report says about its run. */
export interface ReportMeta {
  problem: string;
  /** The GPU's fingerprint; its `description` names the GPU. */
  gpu: { description: string };
  /** The ISO date of the run. */
  date: string;
  /** Rows of weight types this run did not time, taken from the report it replaced. */
  kept?: KeptRows[];
  [key: string]: unknown;
}

/** The bench's JSON report. */
export interface Report {
  meta: ReportMeta;
  /** One line per weight type, starting with the weight type and a colon. */
  summaries: string[];
  rows: Row[];
}

/**
 * The report at `path`, or undefined where there is none.
 *
 * @throws {TypeError} When the file is not a bench report (not JSON, or meta.problem, meta.date,
 *   summaries or rows missing or malformed; checked with zod, like the YAML inputs).
 * @example
 * ```ts
 * import { readReport } from "./report_file.ts";
 * if (await readReport("no/such/report.json") !== undefined) throw new Error("a report");
 * ```
 */
export async function readReport(path: string): Promise<Report | undefined> {
  const text = await readTextIfPresent(path);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new TypeError(`Expected ${path} to be a bench report in JSON: ${(e as Error).message}`);
  }
  const result = reportShape.safeParse(value);
  if (!result.success) {
    const missing = [...new Set(result.error.issues.map((i) => i.path.join(".") || "meta"))];
    throw new TypeError(
      `Expected ${path} to be a bench report with meta.problem, meta.date, summaries and rows: ` +
        `${missing.join(", ")} missing or malformed`,
    );
  }
  return value as Report;
}

/**
 * The report `next`, with the rows and summaries of the weight types it lacks taken from
 * `earlier` where both are of the same problem on the same GPU. Rows already kept once keep the
 * date they were measured on.
 *
 * @example
 * ```ts
 * import { mergeReports, type Report } from "./report_file.ts";
 * import type { Row } from "./row.ts";
 * const report = (date: string, dtype: string): Report => ({
 *   meta: { problem: "tiny", gpu: { description: "GPU" }, date },
 *   summaries: [`${dtype}: tuned vs defaults 1.10x`],
 *   rows: [{ dtype, m: 1, tunedUs: 10 } as Row],
 * });
 * const merged = mergeReports(report("2026-12-05", "bf16"), report("2026-12-06", "f32"));
 * if (merged.rows.map((r) => r.dtype).join() !== "f32,bf16") throw new Error("rows");
 * if (merged.meta.kept?.[0].date !== "2026-12-05") throw new Error("kept");
 * ```
 */
export function mergeReports(earlier: Report | undefined, next: Report): Report {
  if (
    !earlier || earlier.meta.problem !== next.meta.problem ||
    earlier.meta.gpu?.description !== next.meta.gpu.description
  ) {
    return next;
  }
  const timed = new Set(next.rows.map((r) => r.dtype));
  const keptRows = earlier.rows.filter((r) => !timed.has(r.dtype));
  const dtypes = [...new Set(keptRows.map((r) => r.dtype))];
  if (!dtypes.length) return next;
  const kept = dtypes.map((dtype) => ({
    dtype,
    date: earlier.meta.kept?.find((k) => k.dtype === dtype)?.date ?? earlier.meta.date,
  }));
  const keptSummaries = earlier.summaries.filter((s) => dtypes.includes(s.split(":")[0]));
  return {
    meta: { ...next.meta, kept },
    summaries: [...next.summaries, ...keptSummaries],
    rows: [...next.rows, ...keptRows],
  };
}
