import assert from "node:assert/strict";
import {
  bf16BitsToF32,
  bytesPerElement,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  packWeights,
  parseWeightLabel,
  roundWeights,
} from "../kernels/dtype.ts";

const hex = (x: number) => `0x${x.toString(16)}`;

function assertF16(value: number, bits: number) {
  assert.equal(hex(f32ToF16Bits(value)), hex(bits), `f32ToF16Bits(${value})`);
}

function assertBf16(value: number, bits: number) {
  assert.equal(hex(f32ToBf16Bits(value)), hex(bits), `f32ToBf16Bits(${value})`);
}

Deno.test("f32ToF16Bits() converts exact values to their known half bits", () => {
  assertF16(1, 0x3c00);
  assertF16(-2, 0xc000);
  assertF16(0.5, 0x3800);
  assertF16(65504, 0x7bff);
  assertF16(2 ** -14, 0x0400); // smallest normal
  assertF16(2 ** -24, 0x0001); // smallest subnormal
  assertF16(0, 0x0000);
});

Deno.test("f32ToF16Bits() overflows past the largest half to infinity", () => {
  assertF16(65519, 0x7bff); // below the midpoint to 65536: stays at max
  assertF16(65520, 0x7c00); // the midpoint rounds to even, which is infinity
  assertF16(1e6, 0x7c00);
  assertF16(-1e6, 0xfc00);
});

Deno.test("f32ToF16Bits() rounds subnormals to nearest, ties to even", () => {
  assertF16(2 ** -25, 0x0000); // halfway between 0 and 2^-24: tie goes to even 0
  assertF16(3 * 2 ** -26, 0x0001); // 0.75 * 2^-24 rounds up
  assertF16(3 * 2 ** -25, 0x0002); // 1.5 * 2^-24: tie goes to even 2
  assertF16(2 ** -26, 0x0000);
  assertF16(-(2 ** -24), 0x8001);
  assertF16(-(2 ** -26), 0x8000); // underflow keeps the sign
});

Deno.test("f32ToF16Bits() rounds normals to nearest, ties to even", () => {
  assertF16(1 + 2 ** -11, 0x3c00); // tie between 0x3c00 and 0x3c01: even 0x3c00
  assertF16(1 + 3 * 2 ** -11, 0x3c02); // tie between 0x3c01 and 0x3c02: even 0x3c02
  assertF16(1 + 2 ** -11 + 2 ** -20, 0x3c01); // just above the tie rounds up
  assertF16(2 - 2 ** -12, 0x4000); // carries into the exponent
});

Deno.test("f32ToF16Bits() keeps NaN, infinities and the sign of zero", () => {
  const nan = f32ToF16Bits(NaN);
  assert.equal(nan & 0x7c00, 0x7c00, "NaN exponent is all ones");
  assert.notEqual(nan & 0x3ff, 0, "NaN mantissa is non-zero");
  assert.ok(Number.isNaN(f16BitsToF32(nan)));
  assertF16(Infinity, 0x7c00);
  assertF16(-Infinity, 0xfc00);
  assertF16(-0, 0x8000);
  assert.ok(Object.is(f16BitsToF32(0x8000), -0), "0x8000 widens to -0");
});

Deno.test("f16BitsToF32() widens known bits exactly", () => {
  assert.equal(f16BitsToF32(0x3c00), 1);
  assert.equal(f16BitsToF32(0xc000), -2);
  assert.equal(f16BitsToF32(0x7bff), 65504);
  assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  assert.equal(f16BitsToF32(0x03ff), 1023 * 2 ** -24);
  assert.equal(f16BitsToF32(0x7c00), Infinity);
  assert.equal(f16BitsToF32(0xfc00), -Infinity);
});

Deno.test("f32ToF16Bits() and f16BitsToF32() round-trip every finite half", () => {
  for (let h = 0; h < 0x10000; h++) {
    const exp = (h >>> 10) & 0x1f;
    if (exp === 0x1f) continue;
    const back = f32ToF16Bits(f16BitsToF32(h));
    if (back !== h) assert.fail(`half ${hex(h)} round-trips to ${hex(back)}`);
  }
});

Deno.test("f32ToBf16Bits() converts exact values to their known bfloat16 bits", () => {
  assertBf16(1, 0x3f80);
  assertBf16(-2, 0xc000);
  assertBf16(0, 0x0000);
  assertBf16(-0, 0x8000);
  assertBf16(Infinity, 0x7f80);
  assertBf16(-Infinity, 0xff80);
  assert.equal(bf16BitsToF32(0x3f80), 1);
  assert.equal(bf16BitsToF32(0xc000), -2);
  assert.equal(bf16BitsToF32(0x7f80), Infinity);
  assert.ok(Object.is(bf16BitsToF32(0x8000), -0));
});

Deno.test("f32ToBf16Bits() rounds to nearest, ties to even", () => {
  assertBf16(1 + 2 ** -8, 0x3f80); // tie between 0x3f80 and 0x3f81: even 0x3f80
  assertBf16(1 + 3 * 2 ** -8, 0x3f82); // tie between 0x3f81 and 0x3f82: even 0x3f82
  assertBf16(1 + 2 ** -8 + 2 ** -20, 0x3f81); // above the tie rounds up
  assertBf16(1 + 2 ** -9, 0x3f80); // below the tie rounds down
  assertBf16(-(1 + 3 * 2 ** -8), 0xbf82);
  assertBf16(3.4028234663852886e38, 0x7f80); // f32 max rounds up to infinity
});

Deno.test("f32ToBf16Bits() keeps NaN a NaN, including NaNs with only low mantissa bits", () => {
  assert.ok(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN))));
  // A NaN whose mantissa lives only in the low 16 bits would truncate to infinity.
  const f = new Float32Array(new Uint32Array([0x7f800001]).buffer);
  const bits = f32ToBf16Bits(f[0]);
  assert.ok(Number.isNaN(bf16BitsToF32(bits)), `got ${hex(bits)}`);
  const neg = new Float32Array(new Uint32Array([0xff800001]).buffer);
  const negBits = f32ToBf16Bits(neg[0]);
  assert.ok(Number.isNaN(bf16BitsToF32(negBits)), `got ${hex(negBits)}`);
});

Deno.test("bytesPerElement() is 4 for f32 and 2 for the 16-bit types", () => {
  assert.equal(bytesPerElement("f32"), 4);
  assert.equal(bytesPerElement("f16"), 2);
  assert.equal(bytesPerElement("bf16"), 2);
});

Deno.test("packWeights() puts element 2i in the low half and 2i+1 in the high half", () => {
  const values = new Float32Array([1, -2, 0.5, 65504]);
  const f16 = packWeights(values, "f16");
  assert.ok(f16 instanceof Uint32Array);
  assert.deepEqual([...f16], [(0xc000 << 16 | 0x3c00) >>> 0, (0x7bff << 16 | 0x3800) >>> 0]);
  const bf16 = packWeights(values, "bf16");
  assert.ok(bf16 instanceof Uint32Array);
  assert.equal(bf16[0], (0xc000 << 16 | 0x3f80) >>> 0);
  assert.equal(bf16[0] & 0xffff, f32ToBf16Bits(1));
  assert.equal(bf16[1] >>> 16, f32ToBf16Bits(65504));
});

Deno.test("packWeights() keeps f32 weights as float32", () => {
  const values = new Float32Array([1, 2, 3]);
  const packed = packWeights(values, "f32");
  assert.ok(packed instanceof Float32Array);
  assert.deepEqual([...packed], [1, 2, 3]);
});

Deno.test("packWeights() rejects an odd number of 16-bit weights with a RangeError", () => {
  assert.throws(() => packWeights(new Float32Array(3), "f16"), RangeError);
  assert.throws(() => packWeights(new Float32Array(5), "bf16"), RangeError);
});

Deno.test("roundWeights() gives the values the bit round trip gives", () => {
  const values = new Float32Array(256);
  for (let i = 0; i < values.length; i++) values[i] = Math.sin(i * 1.7) * 10 ** ((i % 9) - 4);
  values[0] = 1 + 2 ** -11;
  values[1] = 70000;
  const f16 = roundWeights(values, "f16");
  const bf16 = roundWeights(values, "bf16");
  const f32 = roundWeights(values, "f32");
  assert.ok(f16 instanceof Float64Array);
  for (let i = 0; i < values.length; i++) {
    assert.equal(f16[i], f16BitsToF32(f32ToF16Bits(values[i])), `f16 element ${i}`);
    assert.equal(bf16[i], bf16BitsToF32(f32ToBf16Bits(values[i])), `bf16 element ${i}`);
    assert.equal(f32[i], values[i], `f32 element ${i}`);
  }
  assert.equal(f16[0], 1);
  assert.equal(f16[1], Infinity);
  // The packed bits agree with the rounded values, element by element.
  const packed = packWeights(values, "f16") as Uint32Array;
  for (let i = 0; i < values.length; i++) {
    const bits = (packed[i >> 1] >>> (16 * (i & 1))) & 0xffff;
    assert.equal(f16BitsToF32(bits), f16[i], `packed element ${i}`);
  }
});

Deno.test("parseWeightLabel() reads a type with or without -fast, and names a bad one", () => {
  assert.deepEqual(parseWeightLabel("bf16"), { dtype: "bf16", precision: "exact" });
  assert.deepEqual(parseWeightLabel("f16-fast"), { dtype: "f16", precision: "fast" });
  const bad = (label: string, message: RegExp) =>
    assert.throws(() => parseWeightLabel(label), { name: "RangeError", message });
  bad("bf16-fast", /precision "fast" is for f16 weights, got bf16/);
  bad("f8", /Expected a weight type \(f32, f16, bf16\), got "f8"/);
  bad("f16-quick", /got "f16-quick"/);
});
