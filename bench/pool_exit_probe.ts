// Probe: how a process with compile worker threads (each with its own device) ends safely on
// this GPU. Eight threads compile tp4 f16 kernels; after 2 s no new source is sent and the
// ones in flight finish (drained); then the threads end as `mode` says:
//   exit: Deno.exit(0) with the threads alive; close: each destroys its device and closes
//   itself; keep: each closes itself, device left; terminate: terminate() from the main thread;
//   busy: terminate() without draining.
// Run it several times per mode and compare exit codes (139: crashed, 124: hung past timeout).
import { kernelWgsl } from "../kernels/generate.ts";
import { configProblem, type DeviceCaps } from "../kernels/config.ts";
import { DEFAULT_SPACE, enumerateSpace } from "../kernels/space.ts";
import { fusedShape, kimiLinearSpec } from "../kernels/problem.ts";

const mode = Deno.args[0];
const shape = fusedShape(kimiLinearSpec({ tp: 4 }));
const caps = {
  maxInvocations: 1024,
  maxWorkgroupStorage: 49152,
  maxWorkgroupSizeX: 1024,
  maxWorkgroupSizeY: 1024,
} as DeviceCaps;
const codes = enumerateSpace(DEFAULT_SPACE).filter((c) => !configProblem(c, shape, "f16", caps))
  .slice(0, 300).map((c) => kernelWgsl(c, shape, "f16"));
const workers = await Promise.all(Array.from({ length: 8 }, () =>
  new Promise<Worker>((resolve) => {
    const w = new Worker(new URL("../tuner/compile_worker.ts", import.meta.url), {
      type: "module",
    });
    w.onmessage = () => resolve(w);
  })));
let sending = true, next = 0, inFlight = 0, done = 0;
let drained!: () => void;
const idle = new Promise<void>((r) => drained = r);
const send = (w: Worker) => {
  if (!sending || next >= codes.length) return inFlight === 0 && drained();
  inFlight++;
  w.postMessage({ id: next, name: "k", code: codes[next++] });
};
for (const w of workers) {
  w.onmessage = (e) => {
    if (e.data.closed) return;
    inFlight--, done++;
    send(w);
  };
  send(w);
}
await new Promise((r) => setTimeout(r, 2000));
sending = false;
if (mode !== "busy") await idle;
console.log(`${mode}: ${done} compiled, ${inFlight} in flight`);
if (mode === "exit") Deno.exit(0);
if (mode === "close" || mode === "keep") {
  await Promise.all(workers.map((w) =>
    new Promise<void>((resolve) => {
      w.onmessage = () => resolve();
      w.postMessage({ close: true, keepDevice: mode === "keep" });
    })
  ));
} else {
  for (const w of workers) w.terminate();
}
console.log("ended");
