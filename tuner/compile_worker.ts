/**
 * A worker thread of the compile pool (compile_pool.ts): opens its own device on the
 * high-performance adapter, with the tuner's features and limits, and compiles the WGSL it is
 * sent, one source at a time. The pipelines are dropped; what stays is the driver's shader
 * cache entry, which the tuner's own compile of the same source then reads.
 *
 * Messages in: `{ id, name, code }`, or `{ close: true }` (sent only while it is idle) to
 * destroy its device and end (`keepDevice: true` ends without destroying it: only for
 * bench/pool_exit_probe.ts, which compares the two). Out: `{ ready: true }` or `{ failed: reason }` once the device is
 * open (or not), `{ id, ok }` per source, `ok` false where it did not compile (the tuner's own
 * compile reports why), and `{ closed: true }` last.
 *
 * @module
 */
import { requestTunedDevice } from "../kernels/device.ts";
import { buildPipeline } from "../kernels/gpu.ts";

/** One source to compile. */
export interface CompileJob {
  id: number;
  name: string;
  code: string;
}

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<CompileJob | { close: true; keepDevice?: boolean }>) => void) | null;
  postMessage: (message: unknown) => void;
  close: () => void;
};

async function openDevice(): Promise<GPUDevice> {
  const adapter = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error("no WebGPU adapter in the worker");
  return await requestTunedDevice(adapter, { label: "compile pool" });
}

try {
  const device = await openDevice();
  scope.onmessage = async (e) => {
    if ("close" in e.data) {
      if (!e.data.keepDevice) device.destroy();
      scope.postMessage({ closed: true });
      scope.close();
      return;
    }
    const { id, name, code } = e.data;
    let ok = true;
    await buildPipeline(device, name, code).catch(() => ok = false);
    scope.postMessage({ id, ok });
  };
  scope.postMessage({ ready: true });
} catch (e) {
  scope.postMessage({ failed: e instanceof Error ? e.message : String(e) });
  scope.close();
}
