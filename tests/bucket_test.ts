import assert from "node:assert/strict";
import { bucketFor } from "../dispatch/bucket.ts";
import { bucketFor as exported } from "../mod.ts";

Deno.test("bucketFor() picks the smallest tuned bucket >= m", () => {
  const buckets = [1, 2, 4, 8, 16, 64, 256];
  assert.equal(bucketFor(3, buckets), 4);
  assert.equal(bucketFor(5, buckets), 8);
  assert.equal(bucketFor(17, buckets), 64);
  assert.equal(bucketFor(65, buckets), 256);
});

Deno.test("bucketFor() uses the bucket itself on an exact match", () => {
  const buckets = [1, 3, 16];
  for (const m of buckets) assert.equal(bucketFor(m, buckets), m);
});

Deno.test("bucketFor() uses the largest bucket past the last one", () => {
  assert.equal(bucketFor(17, [1, 3, 16]), 16);
  assert.equal(bucketFor(100_000, [1, 64]), 64);
});

Deno.test("bucketFor() does not depend on the order of the buckets", () => {
  const shuffled = [64, 1, 16, 4, 256, 2, 8];
  assert.equal(bucketFor(3, shuffled), 4);
  assert.equal(bucketFor(1000, shuffled), 256);
  assert.equal(bucketFor(1, shuffled), 1);
  assert.equal(bucketFor(9, [16, 16, 1]), 16);
});

Deno.test("bucketFor() with one bucket always uses it", () => {
  for (const m of [1, 7, 8, 9, 1000]) assert.equal(bucketFor(m, [8]), 8);
});

Deno.test("bucketFor() throws a RangeError for an empty bucket list", () => {
  assert.throws(() => bucketFor(1, []), RangeError);
});

Deno.test("mod.ts exports the same bucketFor()", () => {
  assert.equal(exported, bucketFor);
});
