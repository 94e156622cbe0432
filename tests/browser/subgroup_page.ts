/**
 * The browser side of the subgroup check (tests/browser/subgroup.html): opens a device with
 * "subgroups" where the adapter has it, runs {@linkcode checkSubgroupKernels}, and leaves the
 * results in `<pre id="results">` and `window.__results` for tests/spawn/browser_test.ts. Bundled
 * by that test to dist/subgroup_page.js.
 *
 * @module
 */
import { checkSubgroupKernels, type SubgroupReport } from "./subgroup_check.ts";

// Deno's type library has WebGPU but no DOM: declare the little of it this page uses.
declare const document: {
  getElementById(id: string): { textContent: string | null } | null;
};

/** What the page reports. */
interface PageResults {
  finished: boolean;
  passed: boolean;
  adapter: Record<string, unknown> | null;
  report: SubgroupReport | null;
  errors: string[];
}

const results: PageResults = {
  finished: false,
  passed: false,
  adapter: null,
  report: null,
  errors: [],
};
(globalThis as { __results?: PageResults }).__results = results;

function show(): void {
  const out = document.getElementById("results");
  if (out) out.textContent = JSON.stringify(results, null, 2);
  const checks = results.report?.checks ?? [];
  const status = document.getElementById("status");
  if (status && results.finished) {
    status.textContent = `${results.passed ? "Passed" : "FAILED"}: ${
      checks.filter((c) => c.problem === null).length
    } of ${checks.length} subgroup kernels match the reference; "enable subgroups;" ${
      results.report?.directive ? "prepended" : "not prepended"
    }; ${results.errors.length} errors.`;
  }
}

function reportError(where: string, error: unknown): void {
  const message = error instanceof Error
    ? `${error.name}: ${error.message}`
    : String((error as { message?: string })?.message ?? error);
  results.errors.push(`${where}: ${message}`);
  show();
}

globalThis.addEventListener("error", (e) => reportError("uncaught error", e.error ?? e.message));
globalThis.addEventListener(
  "unhandledrejection",
  (e) => reportError("unhandled rejection", e.reason),
);

async function main(): Promise<void> {
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  const info = adapter.info as GPUAdapterInfo & {
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
  };
  results.adapter = {
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description,
    subgroupMinSize: info.subgroupMinSize ?? null,
    subgroupMaxSize: info.subgroupMaxSize ?? null,
    features: [...adapter.features].sort(),
  };
  const device = await adapter.requestDevice({
    requiredFeatures: (["subgroups"] as GPUFeatureName[]).filter((f) => adapter.features.has(f)),
  });
  device.lost.then((lost) => {
    if (lost.reason !== "destroyed") reportError("device lost", lost.message || lost.reason);
  });
  device.addEventListener("uncapturederror", (e) => {
    reportError("WebGPU error", (e as GPUUncapturedErrorEvent).error);
  });
  try {
    results.report = await checkSubgroupKernels(device, info.subgroupMinSize ?? 0);
    // Let uncaptured errors of the last submit arrive before the verdict.
    await device.queue.onSubmittedWorkDone();
  } finally {
    device.destroy();
  }
}

try {
  await main();
} catch (e) {
  reportError("run", e);
}
const checks = results.report?.checks ?? [];
results.passed = results.errors.length === 0 && checks.length > 0 &&
  checks.every((c) => c.problem === null);
results.finished = true;
show();
