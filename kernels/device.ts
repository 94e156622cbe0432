/**
 * Devices and their tiers: what a device made by `requestTunedDevice` can run, and the two
 * weaker tiers the cache also keeps winners for (no subgroups; WebGPU's default limits), so
 * that tuning survives whatever device a user made.
 *
 * @module
 */
import { describeValue } from "./describe.ts";
import type { DeviceCaps } from "./config.ts";

/**
 * A device tier a config was measured for:
 * - `"best"`: the adapter's limits and subgroups (what {@linkcode requestTunedDevice} asks for);
 * - `"no-subgroups"`: the adapter's limits without subgroups;
 * - `"portable"`: WebGPU's default limits and no optional feature (what a plain
 *   `adapter.requestDevice()` gives).
 */
export type DeviceTier = "best" | "no-subgroups" | "portable";

/** The tiers, fastest (most demanding) first. */
export const DEVICE_TIERS: readonly DeviceTier[] = ["best", "no-subgroups", "portable"];

/** WebGPU's default limits, with no optional feature: what every WebGPU device grants. */
export const PORTABLE_CAPS: Readonly<DeviceCaps> = Object.freeze({
  maxInvocations: 256,
  maxWorkgroupSizeX: 256,
  maxWorkgroupSizeY: 256,
  maxWorkgroupStorage: 16384,
  maxStorageBinding: 128 << 20,
  maxWorkgroupsPerDimension: 65535,
  subgroups: false,
  subgroupMinSize: 0,
});

/**
 * Limits no device has: a config invalid even under these is invalid for its shape, whatever
 * the device.
 */
export const UNLIMITED_CAPS: Readonly<DeviceCaps> = Object.freeze({
  maxInvocations: Infinity,
  maxWorkgroupSizeX: Infinity,
  maxWorkgroupSizeY: Infinity,
  maxWorkgroupStorage: Infinity,
  maxStorageBinding: Infinity,
  maxWorkgroupsPerDimension: Infinity,
  subgroups: true,
  subgroupMinSize: 128,
  shaderF16: true,
});

/**
 * What a tier's device can run, given what the tuning device could.
 *
 * @example
 * ```ts
 * import { PORTABLE_CAPS, tierCaps } from "./device.ts";
 * const h100 = { ...PORTABLE_CAPS, maxInvocations: 1024, subgroups: true, subgroupMinSize: 32 };
 * if (tierCaps("no-subgroups", h100).subgroups) throw new Error("no subgroups in that tier");
 * if (tierCaps("no-subgroups", h100).maxInvocations !== 1024) throw new Error("adapter limits");
 * if (tierCaps("portable", h100).maxInvocations !== 256) throw new Error("default limits");
 * ```
 */
export function tierCaps(tier: DeviceTier, best: DeviceCaps): DeviceCaps {
  if (tier === "best") return best;
  if (tier === "no-subgroups") return { ...best, subgroups: false, subgroupMinSize: 0 };
  return { ...PORTABLE_CAPS };
}

/** Options of {@linkcode requestTunedDevice}. */
export interface TunedDeviceOptions {
  /** Features to ask for besides those tuned kernels use (for example "timestamp-query"). */
  requiredFeatures?: GPUFeatureName[];
  /** Limits to ask for besides those tuned kernels use; these win where both name a limit. */
  requiredLimits?: Record<string, number>;
  /** The device's label. */
  label?: string;
}

/** The limits tuned kernels may use, as the adapter grants them. */
const TUNED_LIMITS = [
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupStorageSize",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
] as const;

/**
 * Makes a device that runs every tuned kernel the adapter can: the adapter's limits for
 * workgroups and buffers, `"subgroups"` where the adapter grants it (wgpu on NVIDIA grants it
 * without listing it in `adapter.features`, so it is asked for and dropped if refused), and
 * `"shader-f16"` where listed. A plain `adapter.requestDevice()` gets WebGPU's default limits,
 * under which the dispatcher falls back to slower tiers.
 *
 * @param adapter The adapter to make the device from.
 * @param options Further features and limits, and a label.
 * @returns The device.
 * @throws {TypeError} If `adapter` is not a GPUAdapter, or the adapter refuses a feature or
 * limit named in `options`.
 * @example Make the device, then a projection on it
 * ```ts
 * import { requestTunedDevice } from "../mod.ts";
 * const adapter = await navigator.gpu.requestAdapter();
 * if (adapter) {
 *   const device = await requestTunedDevice(adapter);
 *   const grants = device.limits.maxComputeInvocationsPerWorkgroup;
 *   if (grants !== adapter.limits.maxComputeInvocationsPerWorkgroup) throw new Error("limits");
 *   device.destroy();
 * }
 * ```
 */
export async function requestTunedDevice(
  adapter: GPUAdapter,
  options: TunedDeviceOptions = {},
): Promise<GPUDevice> {
  if (typeof adapter?.requestDevice !== "function") {
    throw new TypeError(
      `Cannot request a device: adapter must be a GPUAdapter, got ${describeValue(adapter)}`,
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of TUNED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof value === "number") requiredLimits[name] = value;
  }
  Object.assign(requiredLimits, options.requiredLimits);
  const features = new Set<GPUFeatureName>(options.requiredFeatures);
  if (adapter.features.has("shader-f16")) features.add("shader-f16");
  const descriptor = (extra: GPUFeatureName[]): GPUDeviceDescriptor => ({
    requiredFeatures: [...new Set([...features, ...extra])],
    requiredLimits,
    ...(options.label ? { label: options.label } : {}),
  });
  const subgroups = "subgroups" as GPUFeatureName;
  if (features.has(subgroups) || adapter.features.has(subgroups)) {
    return await adapter.requestDevice(descriptor([subgroups]));
  }
  try {
    return await adapter.requestDevice(descriptor([subgroups]));
  } catch {
    return await adapter.requestDevice(descriptor([]));
  }
}
