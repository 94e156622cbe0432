/**
 * What a kernel compiled to on an NVIDIA GPU: the instructions of `nvdisasm` listings counted by
 * opcode, one column per listing, so that two variants of a kernel (with and without splatted X,
 * say) can be compared line by line. HFMA2s that take one half of a register twice (`.H0_H0` or
 * `.H1_H1`, the broadcast a packed f16 FMA can do for free) are counted apart, as `HFMA2 (h0h0)`,
 * and so are those issued to the second pipe, `HFMA2.MMA`, as `HFMA2 (mma)`. With `--loop` only
 * each listing's largest loop is counted (from a backward branch's target to the branch): the
 * k loop's body, what a kernel issues per trip. The listings come from `bench/gpu_sass.sh` on the
 * GPU machine.
 *
 *   deno run --allow-read bench/sass_count.ts [--loop] <a.sass> <b.sass>...
 *
 * @module
 */

import { parseArgs } from "node:util";

/** An instruction line of a listing: its address, mnemonic, mnemonic's suffixes, operands. */
const INSTRUCTION = /^\s*\/\*([0-9a-f]+)\*\/\s+(?:@!?U?P[0-9T]\s+)?([A-Z][A-Z0-9_]*)(\S*)\s*(.*)$/;

/**
 * Instructions of an `nvdisasm` listing by opcode (the mnemonic before its first dot, without a
 * predicate), `HFMA2 (h0h0)` for HFMA2s with a half-select broadcast operand and `HFMA2 (mma)`
 * for those on the second pipe.
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
 * if (
 *   counts.get("HFMA2") !== 2 || counts.get("HFMA2 (h0h0)") !== 1 ||
 *   counts.get("HFMA2 (mma)") !== 1 || counts.get("FFMA") !== 1
 * ) {
 *   throw new Error(JSON.stringify([...counts]));
 * }
 * ```
 */
export function countOpcodes(listing: string): Map<string, number> {
  const counts = new Map<string, number>();
  const add = (key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
  for (const line of listing.split("\n")) {
    const m = line.match(INSTRUCTION);
    if (!m) continue;
    add(m[2]);
    if (m[2] === "HFMA2" && /\.H([01])_H\1\b/.test(m[4])) add("HFMA2 (h0h0)");
    if (m[2] === "HFMA2" && m[3].startsWith(".MMA")) add("HFMA2 (mma)");
  }
  return counts;
}

/**
 * The lines of a listing's largest loop: from the target of a branch back to an earlier address,
 * up to that branch; the whole listing if it has no backward branch.
 *
 * @example
 * ```ts
 * import { loopBody } from "./sass_count.ts";
 * const listing = [
 *   "        /*0010*\/                   MOV R1, RZ ;",
 *   "        /*0020*\/                   FFMA R1, R2, R3, R1 ;",
 *   "        /*0030*\/               @P0 BRA 0x20 ;",
 *   "        /*0040*\/                   EXIT ;",
 * ].join("\n");
 * if (loopBody(listing).length !== 2) throw new Error(loopBody(listing).join("\n"));
 * ```
 */
export function loopBody(listing: string): string[] {
  const lines = listing.split("\n");
  const matches = lines.map((line) => line.match(INSTRUCTION));
  let best: [number, number] | undefined; // [from, to] addresses
  for (const m of matches) {
    const target = m?.[2] === "BRA" ? m[4].match(/^0x([0-9a-f]+)/) : null;
    if (!m || !target) continue;
    const [from, to] = [parseInt(target[1], 16), parseInt(m[1], 16)];
    if (from < to && (!best || to - from > best[1] - best[0])) best = [from, to];
  }
  if (!best) return lines;
  return lines.filter((_, i) => {
    const at = matches[i] ? parseInt(matches[i][1], 16) : undefined;
    return at !== undefined && at >= best[0] && at <= best[1];
  });
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
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { loop: { type: "boolean", default: false } },
  });
  if (!positionals.length) {
    console.error("usage: deno run --allow-read bench/sass_count.ts [--loop] <a.sass> <b.sass>...");
    Deno.exit(2);
  }
  const names = positionals.map((p) => p.replace(/^.*\//, "").replace(/\.sass$/, ""));
  const counts = await Promise.all(positionals.map(async (p) => {
    const listing = await Deno.readTextFile(p);
    return countOpcodes(values.loop ? loopBody(listing).join("\n") : listing);
  }));
  console.log(countTable(names, counts).join("\n"));
}
