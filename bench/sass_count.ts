/**
 * What a kernel compiled to on an NVIDIA GPU: the instructions of `nvdisasm` listings counted by
 * opcode, one column per listing, so that two variants of a kernel (with and without splatted X,
 * say) can be compared line by line. HFMA2s that take one half of a register twice (`.H0_H0` or
 * `.H1_H1`, the broadcast a packed f16 FMA can do for free) are counted apart, as `HFMA2 (h0h0)`.
 * The listings come from `bench/gpu_sass.sh` on the GPU machine.
 *
 *   deno run --allow-read bench/sass_count.ts <a.sass> <b.sass>...
 *
 * @module
 */

/**
 * Instructions of an `nvdisasm` listing by opcode (the mnemonic before its first dot, without a
 * predicate), and `HFMA2 (h0h0)` for HFMA2s with a half-select broadcast operand.
 *
 * @example
 * ```ts
 * import { countOpcodes } from "./sass_count.ts";
 * const listing = [
 *   "        /*0a20*\/                   HFMA2 R4, R2.H0_H0, R6, R4 ;",
 *   "        /*0a30*\/               @P0 FFMA.FTZ R1, R2, R3, R1 ;",
 *   "        /*0a40*\/                   HFMA2.MMA R5, R7, R6, R5 ;",
 *   "        .text.main:",
 * ].join("\n");
 * const counts = countOpcodes(listing);
 * if (counts.get("HFMA2") !== 2 || counts.get("HFMA2 (h0h0)") !== 1 || counts.get("FFMA") !== 1) {
 *   throw new Error(JSON.stringify([...counts]));
 * }
 * ```
 */
export function countOpcodes(listing: string): Map<string, number> {
  const counts = new Map<string, number>();
  const add = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
  for (const line of listing.split("\n")) {
    const m = line.match(
      /^\s*\/\*[0-9a-f]+\*\/\s+(?:@!?U?P[0-9T]\s+)?([A-Z][A-Z0-9_]*)(\S*)\s*(.*)$/,
    );
    if (!m) continue;
    add(m[1]);
    if (m[1] === "HFMA2" && /\.H([01])_H\1\b/.test(m[3])) add("HFMA2 (h0h0)");
  }
  return counts;
}

/**
 * A table of the listings' counts: a row per opcode, most frequent first over all listings, a
 * column per listing, and a last row with each listing's total.
 *
 * @example
 * ```ts
 * import { countTable } from "./sass_count.ts";
 * const lines = countTable(["a", "b"], [new Map([["FFMA", 4]]), new Map([["FFMA", 2], ["LDS", 1]])]);
 * if (lines[1].trim().split(/\s+/).join() !== "FFMA,4,2" || !lines.at(-1)!.endsWith("3")) {
 *   throw new Error(lines.join("\n"));
 * }
 * ```
 */
export function countTable(
  names: readonly string[],
  counts: readonly Map<string, number>[],
): string[] {
  const opcodes = [...new Set(counts.flatMap((c) => [...c.keys()]))];
  const total = (op: string) => counts.reduce((s, c) => s + (c.get(op) ?? 0), 0);
  opcodes.sort((a, b) => total(b) - total(a) || a.localeCompare(b));
  const width = Math.max(12, ...opcodes.map((o) => o.length)) + 2;
  const cell = Math.max(8, ...names.map((n) => n.length + 2));
  const row = (label: string, cells: readonly (string | number)[]) =>
    label.padEnd(width) + cells.map((c) => String(c).padStart(cell)).join("");
  const sums = counts.map((c) => [...c].reduce((s, [op, n]) => s + (op.includes(" ") ? 0 : n), 0));
  return [
    row("opcode", names),
    ...opcodes.map((op) => row(op, counts.map((c) => c.get(op) ?? 0))),
    row("total", sums),
  ];
}

if (import.meta.main) {
  if (!Deno.args.length) {
    console.error("usage: deno run --allow-read bench/sass_count.ts <a.sass> <b.sass>...");
    Deno.exit(2);
  }
  const names = Deno.args.map((p) => p.replace(/^.*\//, "").replace(/\.sass$/, ""));
  const counts = await Promise.all(
    Deno.args.map(async (p) => countOpcodes(await Deno.readTextFile(p))),
  );
  console.log(countTable(names, counts).join("\n"));
}
