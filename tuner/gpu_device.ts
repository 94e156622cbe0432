/**
 * Acquiring a GPU device with the features and limits the kernels can use.
 *
 * @module
 */
import type { DeviceCaps } from "../kernels/config.ts";
import { deviceCaps } from "../kernels/config.ts";
import { requestTunedDevice } from "../kernels/device.ts";

/** A device, its adapter's description and what kernels may use on it. */
export interface Gpu {
  adapter: GPUAdapter;
  device: GPUDevice;
  caps: DeviceCaps;
  timestamps: boolean;
}

/** No WebGPU adapter could be had. */
export class NoGpuError extends Error {
  constructor(detail: string) {
    super(`Cannot get a WebGPU adapter: ${detail}`);
    this.name = "NoGpuError";
  }
}

/**
 * Requests the high-performance adapter and a device with timestamp queries and what tuned
 * kernels can use (`requestTunedDevice`: subgroups where the adapter grants them, and the
 * adapter's largest limits for workgroups and buffers).
 *
 * @throws {NoGpuError} If there is no adapter.
 */
export async function openGpu(): Promise<Gpu> {
  if (!("gpu" in navigator)) {
    throw new NoGpuError("navigator.gpu is missing (is this Deno or a WebGPU browser?)");
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new NoGpuError("requestAdapter() returned null (no Vulkan, Metal or D3D12 driver?)");
  }
  const timestamps = (["timestamp-query"] as GPUFeatureName[]).filter((f) =>
    adapter.features.has(f)
  );
  const device = await requestTunedDevice(adapter, { requiredFeatures: timestamps });
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number };
  return {
    adapter,
    device,
    caps: deviceCaps(device, info.subgroupMinSize ?? 0),
    timestamps: device.features.has("timestamp-query"),
  };
}

/**
 * Whether an adapter is a CPU rasterizer (llvmpipe, SwiftShader, WARP), where a heater or a
 * compile pool would only steal the CPU the adapter itself runs on.
 */
export function isSoftwareAdapter(adapter: GPUAdapter): boolean {
  return (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    /llvmpipe|lavapipe|swiftshader|warp/i.test(adapter.info.description);
}

/**
 * The GPU device was lost (driver reset, hung kernel killed, device destroyed) in the middle of
 * a run. Trials finished before are in the log; rerunning the same command resumes from it.
 */
export class DeviceLostError extends Error {
  constructor(detail: string, logPath?: string) {
    super(
      `The GPU device was lost (${detail || "no reason given"}); ${
        logPath ? `trials so far are in ${logPath}` : "trials so far are in the log"
      }: rerun to resume`,
    );
    this.name = "DeviceLostError";
  }
}
