/**
 * The browser build in Chromium's WebGPU (SwiftShader on a machine without a GPU): builds the
 * dispatcher bundle with `deno task bundle` and the subgroup test page, serves the repository
 * root on 127.0.0.1, and checks that the example page (web/index.html) ran every output of
 * Kimi Linear tp8 at m = 1, 3, 64 within its tolerance, found the cache folder next to the
 * bundle, and that `-sg` gemv kernels compile and match the reference in Chrome (which needs
 * the `enable subgroups;` directive that naga refuses). Screenshots go to dist/screenshots/.
 *
 * Needs Chromium: `apt-get install chromium`, or set CHROMIUM_PATH.
 */
import assert from "node:assert/strict";
import { extname, join, normalize } from "node:path";
import puppeteer from "puppeteer-core";
import type { Browser, Page } from "puppeteer-core";
import { ROOT } from "../helpers.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
/**
 * WebGPU is behind a flag on Linux; headless Chromium then falls back to SwiftShader, its CPU
 * Vulkan, where there is no GPU. No sandbox: CI runs as root, where Chromium refuses it.
 */
const CHROMIUM_ARGS = ["--enable-unsafe-webgpu", "--no-sandbox"];
/** Each page's whole run, in ms: the example page takes about 20 s on SwiftShader, 2 cores. */
const PAGE_TIMEOUT = 240_000;
const SCREENSHOTS = join(ROOT, "dist", "screenshots");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".css": "text/css",
};

/** Runs a command from the repository root; throws with its output if it fails. */
async function run(args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const text = new TextDecoder().decode(new Uint8Array([...out.stdout, ...out.stderr]));
    throw new Error(`"deno ${args.join(" ")}" failed with code ${out.code}:\n${text}`);
  }
}

/** Paths the file server was asked for, and those it did not have. */
interface Served {
  requests: string[];
  notFound: string[];
}

/** A static file server for the repository root on loopback (port chosen by the system). */
function serveRoot(served: Served): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    served.requests.push(path);
    const file = normalize(join(ROOT, path));
    if (!file.startsWith(ROOT)) return new Response("Forbidden", { status: 403 });
    try {
      const body = await Deno.readFile(file);
      const type = TYPES[extname(file)] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type, "cache-control": "no-store" } });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory) {
        served.notFound.push(path);
        return new Response("Not found", { status: 404 });
      }
      throw e;
    }
  });
}

/** What went wrong on a page outside its own reporting: exceptions and console errors. */
function watch(page: Page): string[] {
  const problems: string[] = [];
  page.on("pageerror", (e) => problems.push(`page error: ${(e as Error)?.message ?? e}`));
  page.on("error", (e) => problems.push(`the page crashed: ${e.message}`));
  page.on("console", (message) => {
    // 404s are checked from the server's side (a GPU without a cache file gets one).
    if (message.type() === "error" && !/status of 404/.test(message.text())) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  return problems;
}

/**
 * Opens a page, waits for `window.__results.finished`, screenshots it (also when it never
 * finishes) and returns the results.
 */
async function runPage(
  browser: Browser,
  url: string,
  screenshot: `${string}.png`,
): Promise<{ results: Record<string, unknown>; problems: string[] }> {
  const page = await browser.newPage();
  try {
    await page.setViewport({ width: 1280, height: 900 });
    const problems = watch(page);
    await page.goto(url);
    let finished: unknown;
    try {
      await page.waitForFunction(
        () => (globalThis as { __results?: { finished?: boolean } }).__results?.finished === true,
        { timeout: PAGE_TIMEOUT },
      );
    } catch (e) {
      finished = e;
    }
    const path = join(SCREENSHOTS, screenshot) as `${string}.png`;
    await page.screenshot({ path, fullPage: true });
    console.log(`screenshot: ${path}`);
    if (finished) {
      throw new Error(
        `Page ${url} did not finish: ${(finished as Error).message}; ${
          problems.join("; ") || "no page errors"
        }`,
      );
    }
    const results = await page.evaluate(() =>
      (globalThis as unknown as { __results: Record<string, unknown> }).__results
    );
    return { results, problems };
  } finally {
    await page.close();
  }
}

interface ExampleResults {
  finished: boolean;
  passed: boolean;
  tolerance: number;
  adapter: { vendor: string; architecture: string } | null;
  runs: { m: number; config: { source: string; fused: string }; runMs: number }[];
  checks: { m: number; output: string; maxAbs: number; maxRel: number; pass: boolean }[];
  errors: string[];
}

interface SubgroupResults {
  finished: boolean;
  passed: boolean;
  report: {
    subgroups: boolean;
    directive: boolean;
    checks: { config: string; stage: string; dtype: string; m: number; problem: string | null }[];
  } | null;
  errors: string[];
}

Deno.test("the browser bundle runs the example page and subgroup kernels in Chromium", async () => {
  const started = performance.now();
  await Deno.stat(CHROMIUM).catch(() => {
    throw new Error(
      `Cannot find Chromium at "${CHROMIUM}": apt-get install chromium, or set CHROMIUM_PATH`,
    );
  });
  // Built fresh: the dispatcher the way users build it, and the subgroup page from kernels/.
  const bundle = join(ROOT, "dist", "projection.js");
  await Deno.remove(bundle).catch(() => {});
  await Deno.remove(join(ROOT, "dist", "subgroup_page.js")).catch(() => {});
  await run(["task", "bundle"]);
  await Deno.stat(bundle);
  await run([
    "bundle",
    "--platform",
    "browser",
    "-o",
    "dist/subgroup_page.js",
    "tests/browser/subgroup_page.ts",
  ]);
  await Deno.mkdir(SCREENSHOTS, { recursive: true });

  const served: Served = { requests: [], notFound: [] };
  const server = serveRoot(served);
  let browser: Browser | undefined;
  try {
    // DevTools over a pipe, not a port: nothing listens but the file server.
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      pipe: true,
      timeout: 60_000,
    });
    const origin = `http://127.0.0.1:${server.addr.port}`;

    const example = await runPage(browser, `${origin}/web/index.html`, "index.png");
    const page = example.results as unknown as ExampleResults;
    assert.deepEqual(example.problems, [], "no page errors");
    assert.deepEqual(page.errors, [], "the page reported no errors");
    assert.ok(page.adapter, "the page got a WebGPU adapter");
    assert.ok(page.adapter.vendor || page.adapter.architecture, "the adapter describes itself");
    assert.deepEqual(page.runs.map((r) => r.m), [1, 3, 64]);
    const outputs = ["q", "k", "v", "b", "f_a", "g_a", "f_b", "g_b"];
    assert.deepEqual(
      page.checks.map((c) => `${c.m}:${c.output}`),
      [1, 3, 64].flatMap((m) => outputs.map((o) => `${m}:${o}`)),
      "every output at every m was checked",
    );
    for (const c of page.checks) {
      assert.ok(
        c.pass === true && c.maxRel <= page.tolerance,
        `m=${c.m} ${c.output}: relative error ${c.maxRel} over ${page.tolerance}`,
      );
    }
    assert.ok(page.passed, "the page says it passed");
    // The bundle looked for this GPU's cache file in the repository's cache/ folder (a
    // SwiftShader adapter has none: a 404, and the defaults), and found everything else.
    assert.ok(
      served.requests.some((p) => /^\/cache\/[^/]+\.json$/.test(p)),
      `the bundle fetched a file from /cache/: asked for ${served.requests.join(", ")}`,
    );
    const unexpected = served.notFound.filter((p) => !/^\/cache\/[^/]+\.json$/.test(p));
    assert.deepEqual(unexpected, [], "nothing else was missing");

    const subgroup = await runPage(
      browser,
      `${origin}/tests/browser/subgroup.html`,
      "subgroup.png",
    );
    const sg = subgroup.results as unknown as SubgroupResults;
    assert.deepEqual(subgroup.problems, [], "no page errors");
    assert.deepEqual(sg.errors, [], "the subgroup page reported no errors");
    assert.ok(sg.report?.subgroups, "Chromium's adapter has subgroups");
    assert.equal(sg.report.directive, true, "Tint takes 'enable subgroups;'");
    assert.equal(sg.report.checks.length, 40);
    assert.deepEqual(sg.report.checks.filter((c) => c.problem !== null), []);
    assert.ok(sg.passed);
    console.log(
      `adapter ${page.adapter.vendor} ${page.adapter.architecture}; proj.run median ms: ${
        page.runs.map((r) => `m=${r.m} ${r.runMs.toFixed(0)}`).join(", ")
      }; ${sg.report.checks.length} subgroup kernel checks; ${
        ((performance.now() - started) / 1000).toFixed(1)
      } s`,
    );
  } finally {
    await browser?.close();
    await server.shutdown();
  }
});
