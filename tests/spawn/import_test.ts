/**
 * mod.ts imported from outside the repository (issue 8): a script in a folder with no deno.json
 * imports it, makes a projection on the default kernels and runs it, as a child process.
 */
import assert from "node:assert/strict";
import { pathToFileURL } from "node:url";
import { ROOT, withTempDir } from "../helpers.ts";

Deno.test("mod.ts imports and runs from a folder with no config file", async () => {
  await withTempDir("import_anywhere_", async (dir) => {
    const mod = pathToFileURL(`${ROOT}mod.ts`).href;
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { createProjection, requestTunedDevice } from "${mod}";
const adapter = await navigator.gpu.requestAdapter();
const device = await requestTunedDevice(adapter!);
const spec = { name: "outside", k: 8, segments: [{ name: "q", n: 3 }, { name: "v", n: 2 }] };
const fused = new Float32Array(5 * 8).map((_, i) => (i % 8) + Math.floor(i / 8));
const proj = await createProjection(device, spec, { weights: { fused } });
const out = await proj.run(new Float32Array(8).fill(1), 1);
console.log(JSON.stringify({ q: [...out.q], v: [...out.v], source: proj.config(1).source }));
proj.destroy();
device.destroy();
`,
    );
    const run = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts"],
      cwd: dir,
      env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, stderr);
    // Row r of the weight holds r, r+1, ..., r+7: its sum against x = 1 is 8r + 28.
    assert.deepEqual(JSON.parse(new TextDecoder().decode(run.stdout)), {
      q: [28, 36, 44],
      v: [52, 60],
      source: "default",
    });
  });
});
