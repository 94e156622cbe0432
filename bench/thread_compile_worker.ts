// Worker thread for bench/pool_exit_probe.ts: compiles the WGSL it is sent on its own device.
import { requestTunedDevice } from "../kernels/device.ts";
import { buildPipeline } from "../kernels/gpu.ts";

const scope = self as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage: (m: unknown) => void;
  close: () => void;
};
const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
const device = await requestTunedDevice(adapter!);
scope.onmessage = async (e) => {
  if (e.data.close) {
    if (e.data.destroy) device.destroy();
    scope.postMessage({ closed: true });
    scope.close();
    return;
  }
  let ok = true;
  await buildPipeline(device, "k", e.data.code).catch(() => ok = false);
  scope.postMessage({ id: e.data.id, ok });
};
scope.postMessage({ ready: true });
