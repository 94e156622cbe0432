/**
 * How far each precision's results are from the float64 reference, on the tuned kernels of
 * this GPU: `deno run -A bench/precision_probe.ts [problem] [m,...]` (default kimi-linear-tp4,
 * m = 1, 64, 1024, 8192) creates the f16 projection with precision "exact" and "fast", runs it
 * on the same random rows, and prints per m the configs used and two errors over every output
 * of three rows: the largest |error| / sum |x * w| (scale-free, what the tuner's check bounds)
 * and the RMS error / RMS value.
 */
import { batchedInputWidth, fusedWidth } from "../kernels/problem.ts";
import type { Precision } from "../kernels/dtype.ts";
import { roundWeights } from "../kernels/dtype.ts";
import { projectionReference } from "../kernels/reference.ts";
import { createProjection } from "../mod.ts";
import { openGpu } from "../tuner/gpu_device.ts";
import { findProblem } from "../tuner/problems.ts";
import { randomNonZero, seededRandom } from "../tuner/random.ts";

const spec = await findProblem(Deno.args[0] ?? "kimi-linear-tp4");
const ms = (Deno.args[1] ?? "1,64,1024,8192").split(",").map(Number);
const gpu = await openGpu();
const random = seededRandom(11);
const b = spec.batched!;
const weights = {
  fused: randomNonZero(fusedWidth(spec) * spec.k, random),
  batched: randomNonZero(b.inputs.length * b.n * batchedInputWidth(spec), random),
};
const rounded = {
  fused: roundWeights(weights.fused, "f16"),
  batched: roundWeights(weights.batched, "f16"),
};
const projections = new Map<Precision, Awaited<ReturnType<typeof createProjection>>>();
for (const precision of ["exact", "fast"] as const) {
  projections.set(
    precision,
    await createProjection(gpu.device, spec, { weights, dtype: "f16", precision }),
  );
}
console.log(
  "m      precision  fused config                         max err / sum|x*w|  rms err / rms",
);
for (const m of ms) {
  const x = randomNonZero(m * spec.k, random);
  const rows = [...new Set([0, Math.floor(m / 2), m - 1])];
  const reference = projectionReference(spec, x, rounded, rows);
  for (const [precision, projection] of projections) {
    const out = await projection.run(x, m);
    let worst = 0, sq = 0, refSq = 0;
    rows.forEach((r, i) => {
      for (const [name, ref] of reference) {
        for (let c = 0; c < ref.n; c++) {
          const [got, want] = [out[name][r * ref.n + c], ref.values[i * ref.n + c]];
          worst = Math.max(worst, Math.abs(got - want) / ref.magnitudes[i * ref.n + c]);
          sq += (got - want) ** 2;
          refSq += want ** 2;
        }
      }
    });
    const config = projection.config(m).fused;
    console.log(
      `${String(m).padEnd(6)} ${precision.padEnd(10)} ${config.padEnd(36)} ${
        worst.toExponential(2).padStart(18)
      }  ${Math.sqrt(sq / refSq).toExponential(2)}`,
    );
  }
}
for (const p of projections.values()) p.destroy();
gpu.device.destroy();
