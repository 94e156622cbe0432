// Probe: what one dispatch costs in a compute pass on this GPU (Deno WebGPU), and what a plain
// streaming read reaches. Prints one line per case: per-dispatch time with R dispatches per pass.
const adapter = (await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }))!;
const device = await adapter.requestDevice({
  requiredFeatures: ["timestamp-query"],
  requiredLimits: {
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
    maxComputeInvocationsPerWorkgroup: 1024,
    maxComputeWorkgroupSizeX: 1024,
  },
});
const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
async function timePass(
  encodeRuns: (pass: GPUComputePassEncoder, r: number) => void,
  runs: number,
  samples = 9,
) {
  const qs = device.createQuerySet({ type: "timestamp", count: 2 * samples });
  const rb = device.createBuffer({
    size: 16 * samples,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const mb = device.createBuffer({
    size: 16 * samples,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const e = device.createCommandEncoder();
  {
    const p = e.beginComputePass();
    for (let r = 0; r < 20; r++) encodeRuns(p, r);
    p.end();
  }
  for (let s = 0; s < samples; s++) {
    const p = e.beginComputePass({
      timestampWrites: {
        querySet: qs,
        beginningOfPassWriteIndex: 2 * s,
        endOfPassWriteIndex: 2 * s + 1,
      },
    });
    for (let r = 0; r < runs; r++) encodeRuns(p, s * runs + r);
    p.end();
  }
  e.resolveQuerySet(qs, 0, 2 * samples, rb, 0);
  e.copyBufferToBuffer(rb, 0, mb, 0, 16 * samples);
  device.queue.submit([e.finish()]);
  await mb.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(mb.getMappedRange().slice(0));
  mb.unmap();
  const us = Array.from(
    { length: samples },
    (_, s) => Number(t[2 * s + 1] - t[2 * s]) / 1000 / runs,
  ).sort((a, b) => a - b);
  return us[Math.floor(samples / 2)];
}
function pipeline(code: string) {
  return device.createComputePipeline({
    layout: "auto",
    compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
  });
}
const empty = pipeline(`@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { if (g.x == 1000000u) { o[0] = 1.0; } }`);
const outs = Array.from({ length: 64 }, () => device.createBuffer({ size: 1 << 20, usage: S }));
const emptyGroups = outs.map((b) =>
  device.createBindGroup({
    layout: empty.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: b } }],
  })
);
for (const runs of [1, 8, 64]) {
  console.log(`empty 1 wg, same out, runs/pass ${runs}: ${
    (await timePass((p) => {
      p.setPipeline(empty);
      p.setBindGroup(0, emptyGroups[0]);
      p.dispatchWorkgroups(1);
    }, runs)).toFixed(2)
  } us`);
  console.log(`empty 1 wg, distinct outs, runs/pass ${runs}: ${
    (await timePass((p, r) => {
      p.setPipeline(empty);
      p.setBindGroup(0, emptyGroups[r % 64]);
      p.dispatchWorkgroups(1);
    }, runs)).toFixed(2)
  } us`);
}
// Streaming read: each thread reads vec4s strided by the grid, sums, writes one float.
for (
  const [label, elemsPerThread, wg] of [["u8", 8, 256], ["u16", 16, 256], ["u4", 4, 256]] as const
) {
  const code = `@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
const TOTAL = NUMu;
@compute @workgroup_size(${wg}) fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let stride = nw.x * ${wg}u;
  var acc = vec4<f32>(0.0);
  for (var i = g.x; i < TOTAL; i += stride * ${elemsPerThread}u) {
${
    Array.from({ length: elemsPerThread }, (_, u) =>
      `    let v${u} = src[min(i + ${u}u * stride, TOTAL - 1u)];`).join("\n")
  }
${Array.from({ length: elemsPerThread }, (_, u) => `    acc += v${u};`).join("\n")}
  }
  if (acc.x == 12345.0) { o[g.x] = acc.y; }
}`;
  for (const mb of [15.4, 30.7]) {
    const vecs = Math.floor(mb * 1e6 / 16);
    const p = pipeline(code.replace("NUM", String(vecs)));
    const copies = Math.ceil(160 / mb);
    const srcs = Array.from(
      { length: copies },
      () => device.createBuffer({ size: vecs * 16, usage: S }),
    );
    const groups = srcs.map((s) =>
      device.createBindGroup({
        layout: p.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: s } }, {
          binding: 1,
          resource: { buffer: outs[0] },
        }],
      })
    );
    for (const wgs of [528, 1056, 2112]) {
      const us = await timePass((pass, r) => {
        pass.setPipeline(p);
        pass.setBindGroup(0, groups[r % copies]);
        pass.dispatchWorkgroups(wgs);
      }, 16);
      const us1 = await timePass((pass, r) => {
        pass.setPipeline(p);
        pass.setBindGroup(0, groups[r % copies]);
        pass.dispatchWorkgroups(wgs);
      }, 1);
      console.log(
        `stream ${label} ${mb} MB wgs ${wgs}: ${us.toFixed(2)} us/dispatch (16/pass) = ${
          (mb * 1e6 / us / 1e6).toFixed(2)
        } TB/s; 1/pass ${us1.toFixed(2)} us`,
      );
    }
    srcs.forEach((s) => s.destroy());
  }
}
