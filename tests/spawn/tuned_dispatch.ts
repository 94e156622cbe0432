/**
 * The child process of tests/spawn/tune_e2e_test.ts (not a test file itself): makes a
 * projection of problems/tiny.yaml on the tuned cache file it is given, runs it at m = 1, 2, 3,
 * 16 and 40 on random weights, checks every output against the float64 reference and prints
 * what the dispatcher picked at each m as JSON. Exits non-zero, naming the value, on a mismatch.
 *
 *   deno run -A tests/spawn/tuned_dispatch.ts <cache file>
 *
 * @module
 */
import { createProjection } from "../../mod.ts";
import type { ProjectionConfig } from "../../mod.ts";
import { fusedShape, fusedWidth, segmentOffsets } from "../../kernels/problem.ts";
import type { GemmShape, ProjectionSpec } from "../../kernels/problem.ts";
import { referenceRows } from "../../kernels/reference.ts";
import { openGpu } from "../../tuner/gpu_device.ts";
import { randomNonZero, seededRandom } from "../../tuner/random.ts";
import { loadProblem } from "../../tuner/yaml_file.ts";
import { ROOT } from "../helpers.ts";

const [cachePath] = Deno.args;
if (!cachePath) throw new TypeError("Expected a cache file path as the argument, got none");
const spec = await loadProblem(`${ROOT}problems/tiny.yaml`);
const gpu = await openGpu();
const random = seededRandom(11);
const b = spec.batched!;
const kb = spec.segments.find((s) => s.name === b.inputs[0])!.n;
const weights = {
  fused: randomNonZero(fusedWidth(spec) * spec.k, random),
  batched: randomNonZero(b.inputs.length * b.n * kb, random),
};
const proj = await createProjection(gpu.device, spec, {
  weights,
  cache: new URL(`file://${cachePath}`),
});
const picks: Record<number, Pick<ProjectionConfig, "source" | "bucket" | "fused" | "batched">> = {};
try {
  for (const m of [1, 2, 3, 16, 40]) {
    const { source, bucket, fused, batched } = proj.config(m);
    picks[m] = { source, bucket, fused, batched };
    const x = randomNonZero(m * spec.k, random);
    checkAgainstReference(spec, weights, x, m, await proj.run(x, m));
  }
} finally {
  proj.destroy();
  gpu.device.destroy();
}
console.log(JSON.stringify(picks));

/** |y - ref| <= 1e-4 (sum |x w| + 1e-3) for every row and column of every output. */
function checkAgainstReference(
  spec: ProjectionSpec,
  weights: { fused: Float32Array; batched: Float32Array },
  x: Float32Array,
  m: number,
  out: Record<string, Float32Array>,
) {
  const rows = Array.from({ length: m }, (_, i) => i);
  const width = fusedWidth(spec);
  const fused = referenceRows(fusedShape(spec), x, Float64Array.from(weights.fused), rows);
  const offsets = segmentOffsets(spec);
  const b = spec.batched!;
  // The batched stage referenced from the reference fused rows.
  const batchedShape: GemmShape = {
    k: spec.segments.find((s) => s.name === b.inputs[0])!.n,
    n: b.n,
    xOffsets: b.inputs.map((name) => offsets.get(name)!),
    xRowStride: width,
    wOffset: 0,
    yOffsets: b.outputs.map((_, i) => i * b.n),
    yRowStride: b.outputs.length * b.n,
  };
  const batched = referenceRows(
    batchedShape,
    fused.values,
    Float64Array.from(weights.batched),
    rows,
  );
  const check = (name: string, got: number, want: number, mag: number, r: number, c: number) => {
    if (!(Math.abs(got - want) <= 1e-4 * (mag + 1e-3))) {
      throw new Error(`m=${m} ${name}[${r}, ${c}] = ${got}, expected ${want}`);
    }
  };
  for (const r of rows) {
    for (const s of spec.segments) {
      for (let c = 0; c < s.n; c++) {
        const j = r * width + offsets.get(s.name)! + c;
        check(s.name, out[s.name][r * s.n + c], fused.values[j], fused.magnitudes[j], r, c);
      }
    }
    b.outputs.forEach((name, i) => {
      for (let c = 0; c < b.n; c++) {
        const j = (r * b.outputs.length + i) * b.n + c;
        check(name, out[name][r * b.n + c], batched.values[j], batched.magnitudes[j], r, c);
      }
    });
  }
}
