/**
 * The problems that ship in `problems/`, and the buckets tuned by default: what the tuner CLI
 * and the benchmarks both start from.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { loadProblem } from "./yaml_file.ts";

/** The default buckets: powers of two from 1 to 16384. */
export const DEFAULT_BUCKETS: number[] = Array.from({ length: 15 }, (_, i) => 2 ** i);

/**
 * Loads a problem: a YAML path, or the name of a file in `problems/`.
 *
 * @throws {RangeError} If it is neither, naming the problems there.
 */
export async function findProblem(problem: string): Promise<ProjectionSpec> {
  if (/\.ya?ml$/.test(problem)) return await loadProblem(problem);
  const file = new URL(`../problems/${problem}.yaml`, import.meta.url);
  try {
    await Deno.stat(file);
  } catch {
    const known = [...Deno.readDirSync(new URL("../problems/", import.meta.url))]
      .map((e) => e.name.replace(/\.ya?ml$/, ""))
      .sort();
    throw new RangeError(`--problem "${problem}" is not a file or one of: ${known.join(", ")}`);
  }
  return await loadProblem(fileURLToPath(file));
}
