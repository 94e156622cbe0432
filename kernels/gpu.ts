/**
 * Turning generated kernels into pipelines and dispatches. Every kernel has the same four
 * bindings, so one bind group layout serves all configs and a bind group can be reused across
 * configs of a stage.
 *
 * @module
 */
import type { KernelConfig } from "./config.ts";
import { configName, scratchBytes } from "./config.ts";
import type { WeightDtype } from "./dtype.ts";
import { headWgsl, kernelGrid, kernelWgsl } from "./generate.ts";
import type { GemmShape } from "./problem.ts";
import { reductionGrid, reductionWgsl } from "./reduce.ts";

/** A compiled kernel for one config, shape and weight type. */
export interface CompiledKernel {
  name: string;
  config: KernelConfig;
  shape: GemmShape;
  dtype: WeightDtype;
  pipeline: GPUComputePipeline;
  /**
   * A dispatch before `pipeline`'s, writing Y: a stream-K config's data-parallel part
   * (`OuterConfig.dp`).
   */
  head?: GPUComputePipeline;
  /**
   * A split-K or stream-K config's second dispatch, which adds the partials into Y
   * (kernels/reduce.ts).
   */
  reduce?: GPUComputePipeline;
}

/**
 * The WGSL compiler or pipeline creation rejected a kernel. The dispatcher adds the bucket and
 * stage that needed it.
 */
export class KernelCompileError extends Error {
  /**
   * Makes the error.
   *
   * @param config The kernel config's name.
   * @param detail What the compiler said.
   * @param where The bucket (m) and stage that needed the kernel, where known.
   */
  constructor(
    readonly config: string,
    readonly detail: string,
    readonly where: { bucket: number; stage: string } | null = null,
  ) {
    super(
      `Cannot compile kernel "${config}"${
        where ? ` for stage "${where.stage}" of bucket m=${where.bucket}` : ""
      }: ${detail}`,
    );
    this.name = "KernelCompileError";
  }
}

/** A bind group layout of buffers (binding i of type i) and the pipeline layout of it alone. */
export interface BufferLayout {
  bindGroup: GPUBindGroupLayout;
  pipeline: GPUPipelineLayout;
}

const layouts = new WeakMap<GPUDevice, Map<string, BufferLayout>>();

/**
 * The layout of a compute pipeline whose group 0 binds buffers of these types in order, made
 * once per device and list.
 */
export function bufferLayout(device: GPUDevice, types: GPUBufferBindingType[]): BufferLayout {
  let known = layouts.get(device);
  if (!known) layouts.set(device, known = new Map());
  const key = types.join(",");
  let layout = known.get(key);
  if (!layout) {
    const bindGroup = device.createBindGroupLayout({
      entries: types.map((type, binding) => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type },
      })),
    });
    layout = {
      bindGroup,
      pipeline: device.createPipelineLayout({ bindGroupLayouts: [bindGroup] }),
    };
    known.set(key, layout);
  }
  return layout;
}

/** The layout shared by every kernel: uniform m, X, W (read-only) and Y. */
export function kernelLayout(device: GPUDevice): BufferLayout {
  return bufferLayout(device, ["uniform", "read-only-storage", "read-only-storage", "storage"]);
}

/**
 * The exact WGSL {@linkcode compileKernel} compiles for a config on a device: the generated
 * kernel (rewritten by `mutate`, if given), with {@linkcode SUBGROUPS_DIRECTIVE} in front where
 * the device's compiler wants it (see {@linkcode wantsSubgroupsDirective}).
 */
export async function kernelSource(
  device: GPUDevice,
  config: KernelConfig,
  shape: GemmShape,
  dtype: WeightDtype,
  mutate?: WgslMutation,
): Promise<string> {
  const generated = kernelWgsl(config, shape, dtype);
  const mutated = mutate ? mutate(configName(config), generated) : generated;
  return usesSubgroups(config) && await wantsSubgroupsDirective(device)
    ? SUBGROUPS_DIRECTIVE + mutated
    : mutated;
}

/**
 * Every WGSL source {@linkcode compileKernel} compiles for a config: the kernel
 * ({@linkcode kernelSource}), and where the config has them its data-parallel part (stream-K's
 * `-dp`, rewritten by `mutate` too) and its reduction (split-K and stream-K), each with the label
 * its pipeline gets.
 */
export async function kernelSources(
  device: GPUDevice,
  config: KernelConfig,
  shape: GemmShape,
  dtype: WeightDtype,
  mutate?: WgslMutation,
): Promise<{ main: KernelSource; head?: KernelSource; reduce?: KernelSource }> {
  const name = configName(config);
  const main = { code: await kernelSource(device, config, shape, dtype, mutate), label: name };
  const headCode = headWgsl(config, shape, dtype);
  const reduceCode = reductionWgsl(config, shape);
  return {
    main,
    ...(headCode
      ? {
        head: {
          code: mutate ? mutate(name, headCode) : headCode,
          label: `${name} data-parallel part`,
        },
      }
      : {}),
    ...(reduceCode ? { reduce: { code: reduceCode, label: `${name} reduce` } } : {}),
  };
}

/** One WGSL source of a config and the label of its pipeline. */
export interface KernelSource {
  code: string;
  label: string;
}

/**
 * Compiles a config. Validate it first (`configProblem`): this only reports what the
 * compiler says. The sources are {@linkcode kernelSources}'s: the generated WGSL itself is the
 * same on every target.
 *
 * @param warm Awaited before each of the config's pipelines is built (the kernel, its
 * data-parallel part, its reduction), with the exact WGSL and its pipeline's label: for example a
 * compile of the same source on another thread's device, which fills the driver's shader cache so
 * that this thread's compile only reads it (see tuner/compile_pool.ts). It may fail: the compile
 * here is the one that counts.
 * @throws {KernelCompileError} With the compiler's messages.
 */
export async function compileKernel(
  device: GPUDevice,
  config: KernelConfig,
  shape: GemmShape,
  dtype: WeightDtype,
  mutate?: WgslMutation,
  warm?: (code: string, name: string) => Promise<unknown>,
): Promise<CompiledKernel> {
  const name = configName(config);
  const sources = await kernelSources(device, config, shape, dtype, mutate);
  const build = ({ code, label }: KernelSource) =>
    cachedPipeline(
      device,
      code,
      () =>
        warm
          ? warm(code, label).catch(() => {}).then(() => buildPipeline(device, label, code))
          : buildPipeline(device, label, code),
    );
  const pipeline = build(sources.main);
  const head = sources.head && build(sources.head);
  const reduce = sources.reduce && build(sources.reduce);
  // Where the kernel fails, its parts' own failures are not left unhandled; awaited, they throw.
  for (const part of [head, reduce]) part?.catch(() => {});
  return {
    name,
    config,
    shape,
    dtype,
    pipeline: await pipeline,
    ...(head ? { head: await head } : {}),
    reduce: await reduce,
  };
}

/**
 * Pipelines are cached by source per device: projections of one problem, and the split-K
 * kernels of one shape and split (their reduction), share them.
 */
function cachedPipeline(
  device: GPUDevice,
  code: string,
  build: () => Promise<GPUComputePipeline>,
): Promise<GPUComputePipeline> {
  let cache = pipelineCache.get(device);
  if (!cache) pipelineCache.set(device, cache = new Map());
  let pipeline = cache.get(code);
  if (!pipeline) {
    pipeline = build();
    cache.set(code, pipeline);
    pipeline.catch(() => cache.delete(code)); // a failure is reported, not remembered
  }
  return pipeline;
}

/** The directive that WGSL's subgroups extension asks for ahead of subgroup built-ins. */
export const SUBGROUPS_DIRECTIVE = "enable subgroups;\n";

/** Whether a config's kernel calls subgroup built-ins (gemv configs named `...-sg`). */
function usesSubgroups(config: KernelConfig): boolean {
  return config.family === "gemv" && config.subgroup;
}

const subgroupsDirective = new WeakMap<GPUDevice, Promise<boolean>>();

/**
 * Whether a device's WGSL compiler takes `enable subgroups;`. The WGSL specification asks for
 * it ahead of subgroup built-ins and Tint (Chrome's Dawn) refuses subgroup kernels without it;
 * naga (Deno's wgpu) refuses the directive itself and takes the built-ins without it. Found
 * once per device by compiling a tiny probe module, not from the user agent: a device without
 * the "subgroups" feature runs no subgroup kernels and is not probed.
 *
 * @returns `true` if subgroup kernels compiled on this device should start with
 * {@linkcode SUBGROUPS_DIRECTIVE}.
 */
export function wantsSubgroupsDirective(device: GPUDevice): Promise<boolean> {
  let answer = subgroupsDirective.get(device);
  if (!answer) {
    if (!device.features.has("subgroups" as GPUFeatureName)) {
      answer = Promise.resolve(false);
    } else {
      // Pushed and popped with no await between, like the scope in buildPipeline.
      device.pushErrorScope("validation");
      device.createShaderModule({
        code: `${SUBGROUPS_DIRECTIVE}@compute @workgroup_size(1)\nfn main() {}\n`,
        label: "subgroups directive probe",
      });
      answer = device.popErrorScope().then((error) => !error);
    }
    subgroupsDirective.set(device, answer);
  }
  return answer;
}

/**
 * Rewrites the WGSL of a config before it is compiled: a test-only hook, so that tests can
 * inject a kernel that does not compile, computes wrong results or runs too long (see
 * tests/tune_faults_test.ts). Gets the config's name and the generated code.
 */
export type WgslMutation = (config: string, code: string) => string;

const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/**
 * Compiles WGSL into a pipeline with the kernels' shared layout ({@linkcode kernelLayout}),
 * uncached: {@linkcode compileKernel} is what callers want, this is for a compile of the same
 * source on another device (tuner/compile_worker.ts).
 *
 * @param name The config's name, for labels and errors.
 * @param layout The pipeline's layout: the kernels' shared one unless given.
 * @throws {KernelCompileError} With the compiler's messages.
 */
export async function buildPipeline(
  device: GPUDevice,
  name: string,
  code: string,
  layout: GPUPipelineLayout = kernelLayout(device).pipeline,
): Promise<GPUComputePipeline> {
  // The error scope is pushed and popped with no await between, so that compiles running
  // at the same time cannot pop each other's scope.
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code, label: name });
  const moduleError = device.popErrorScope();
  let pipeline: GPUComputePipeline | undefined;
  let failure = "";
  try {
    pipeline = await device.createComputePipelineAsync({
      label: name,
      layout,
      compute: { module, entryPoint: "main" },
    });
  } catch (e) {
    failure = e instanceof Error ? e.message : String(e);
  }
  const scoped = await moduleError;
  if (!pipeline || scoped) {
    const info = await module.getCompilationInfo();
    const messages = info.messages.filter((m) => m.type === "error").map((m) =>
      `${m.lineNum}:${m.linePos} ${m.message}`
    );
    throw new KernelCompileError(
      name,
      [...messages, scoped?.message ?? failure].filter(Boolean).join("; "),
    );
  }
  return pipeline;
}

/** The buffers one dispatch reads and writes. */
export interface KernelBuffers {
  /** 16-byte uniform holding m as its first u32. */
  params: GPUBuffer;
  x: GPUBuffer;
  w: GPUBuffer;
  y: GPUBuffer;
  /**
   * Where split-K kernels leave their partial outputs ({@linkcode scratchBytes}); without it
   * only unsplit kernels can be dispatched.
   */
  scratch?: GPUBuffer;
}

/**
 * The bind groups of one set of buffers: `direct` for a kernel that writes Y; with a scratch
 * buffer, also `split` (the split-K kernel writes the scratch) and `reduce` (the scratch is
 * read as X and added into Y).
 */
export interface KernelBindGroup {
  direct: GPUBindGroup;
  split?: GPUBindGroup;
  reduce?: GPUBindGroup;
  /** Size of the scratch buffer, 0 without one. */
  scratchBytes: number;
}

/** A bind group of a {@linkcode bufferLayout}: buffer i at binding i. */
export function bufferBindGroup(
  device: GPUDevice,
  layout: BufferLayout,
  buffers: GPUBuffer[],
): GPUBindGroup {
  return device.createBindGroup({
    layout: layout.bindGroup,
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
}

/** The bind groups for any kernel of the shared layout over the given buffers. */
export function kernelBindGroup(device: GPUDevice, buffers: KernelBuffers): KernelBindGroup {
  const group = (x: GPUBuffer, y: GPUBuffer) =>
    bufferBindGroup(device, kernelLayout(device), [buffers.params, x, buffers.w, y]);
  const { x, y, scratch } = buffers;
  return {
    direct: group(x, y),
    split: scratch && group(x, scratch),
    reduce: scratch && group(scratch, y),
    scratchBytes: scratch?.size ?? 0,
  };
}

/**
 * A kernel outside the tuner's families (the decode plan's, kernels/recompute.ts and
 * kernels/decode.ts), with a layout of its own and one grid: its bind groups over named
 * buffers, and its dispatch into a pass.
 */
export interface LayoutKernel<B> {
  bindGroup(buffers: B): GPUBindGroup;
  dispatch(pass: GPUComputePassEncoder, group: GPUBindGroup): void;
}

/**
 * Compiles `code` for `layout` (uncached), to dispatch `grid` workgroups; `order` lists a set
 * of named buffers in binding order.
 *
 * @param name The kernel's name, for labels and errors.
 * @throws {KernelCompileError} With the compiler's messages.
 */
export async function compileLayoutKernel<B>(
  device: GPUDevice,
  layout: BufferLayout,
  name: string,
  code: string,
  grid: [number, number, number],
  order: (buffers: B) => GPUBuffer[],
): Promise<LayoutKernel<B>> {
  const pipeline = await buildPipeline(device, name, code, layout.pipeline);
  return {
    bindGroup: (buffers) => bufferBindGroup(device, layout, order(buffers)),
    dispatch: (pass, group) => {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(...grid);
    },
  };
}

/** A uniform buffer holding m, for the `params` binding. */
export function paramsBuffer(device: GPUDevice, m: number): GPUBuffer {
  const buffer = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    label: `params m=${m}`,
  });
  device.queue.writeBuffer(buffer, 0, new Uint32Array([m, 0, 0, 0]));
  return buffer;
}

/**
 * Records a kernel over m rows into a compute pass: one dispatch, or for a split-K kernel the
 * split dispatch and its reduction (a stream-K kernel with a data-parallel part dispatches that
 * part first).
 *
 * @throws {RangeError} If a split-K kernel's bind groups have no scratch buffer, or one
 * smaller than it needs at m.
 */
export function dispatchKernel(
  pass: GPUComputePassEncoder,
  kernel: CompiledKernel,
  bindGroup: KernelBindGroup,
  m: number,
): void {
  const [x, y, z] = kernelGrid(kernel.config, kernel.shape, m);
  if (!kernel.reduce) {
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, bindGroup.direct);
    pass.dispatchWorkgroups(x, y, z);
    return;
  }
  const needed = scratchBytes(kernel.config, kernel.shape, m);
  if (!bindGroup.split || !bindGroup.reduce || bindGroup.scratchBytes < needed) {
    throw new RangeError(
      `Cannot dispatch split-K or stream-K kernel "${kernel.name}" at m=${m}: it needs ${needed} bytes of scratch, got ${bindGroup.scratchBytes}`,
    );
  }
  if (kernel.head) dispatchHead(pass, kernel, bindGroup, m);
  dispatchFirstPass(pass, kernel, bindGroup, m);
  dispatchReduction(pass, kernel, bindGroup, m);
}

/** A stream-K kernel's data-parallel part (`CompiledKernel.head`), which writes Y directly. */
export function dispatchHead(
  pass: GPUComputePassEncoder,
  kernel: CompiledKernel,
  bindGroup: KernelBindGroup,
  m: number,
): void {
  pass.setPipeline(kernel.head!);
  pass.setBindGroup(0, bindGroup.direct);
  pass.dispatchWorkgroups(...kernelGrid(kernel.config, kernel.shape, m));
}

/**
 * The first of a split-K or stream-K kernel's two dispatches, into the scratch (for
 * probes that time the two apart; {@linkcode dispatchKernel} checks the scratch and records both).
 */
export function dispatchFirstPass(
  pass: GPUComputePassEncoder,
  kernel: CompiledKernel,
  bindGroup: KernelBindGroup,
  m: number,
): void {
  pass.setPipeline(kernel.pipeline);
  pass.setBindGroup(0, bindGroup.split!);
  pass.dispatchWorkgroups(...kernelGrid(kernel.config, kernel.shape, m));
}

/** The second of a split-K or stream-K kernel's dispatches: its reduction of the scratch into Y. */
export function dispatchReduction(
  pass: GPUComputePassEncoder,
  kernel: CompiledKernel,
  bindGroup: KernelBindGroup,
  m: number,
): void {
  pass.setPipeline(kernel.reduce!);
  pass.setBindGroup(0, bindGroup.reduce!);
  pass.dispatchWorkgroups(...reductionGrid(kernel.config, kernel.shape, m));
}

/** Creates a storage buffer holding `data` (padded to 4 bytes). */
export function storageBuffer(
  device: GPUDevice,
  data: ArrayBufferView,
  label: string,
  extraUsage = 0,
): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 4) * 4);
  const buffer = device.createBuffer({
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage,
    label,
  });
  device.queue.writeBuffer(buffer, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  return buffer;
}

/** Copies a buffer back to the CPU as floats. */
export async function readBuffer(
  device: GPUDevice,
  buffer: GPUBuffer,
  byteLength = buffer.size,
): Promise<Float32Array> {
  const staging = device.createBuffer({
    size: byteLength,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(buffer, 0, staging, 0, byteLength);
  device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}
