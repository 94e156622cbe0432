/**
 * Naming what a caller passed, for error messages.
 *
 * @module
 */

/**
 * The type of a value as an error message names it: its class, or `null` / `undefined`.
 *
 * @example
 * ```ts
 * import { describeValue } from "./describe.ts";
 * if (describeValue(new Float64Array(1)) !== "Float64Array") throw new Error("class name");
 * if (describeValue(undefined) !== "undefined") throw new Error("undefined");
 * ```
 */
export function describeValue(x: unknown): string {
  return x === null || x === undefined ? String(x) : (x as object).constructor?.name ?? typeof x;
}
