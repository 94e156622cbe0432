/**
 * Loading the tuner's YAML inputs (problem specs and search spaces) with schema checks that
 * name the file and the field at fault, and reject unknown keys so a typo is not ignored.
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import type { ProjectionSpec } from "../kernels/problem.ts";
import { validateSpec } from "../kernels/problem.ts";
import type { SearchSpace } from "../kernels/space.ts";

/** A YAML input that cannot be used. */
export class InputFileError extends SyntaxError {
  constructor(file: string, detail: string) {
    super(`Cannot load "${file}": ${detail}`);
    this.name = "InputFileError";
  }
}

const size = z.number().int().positive();

const problemSchema = z.object({
  name: z.string().min(1),
  k: size,
  segments: z.array(z.object({ name: z.string().min(1), n: size }).strict()).min(1),
  batched: z.object({
    inputs: z.array(z.string().min(1)).min(1),
    outputs: z.array(z.string().min(1)).min(1),
    n: size,
  }).strict().optional(),
}).strict();

const sizes = z.array(size).min(1);
/** A boolean knob's values. */
const flags = z.array(z.boolean()).min(1);
/** A count knob's values, 0 for none (or the default rule). */
const counts = z.array(z.number().int().nonnegative()).min(1);
const spaceSchema = z.object({
  tile: z.object({
    bm: sizes,
    bn: sizes,
    bk: sizes,
    rm: sizes,
    rn: sizes,
    vec: sizes,
    nest: flags.optional(),
  }).strict().optional(),
  outer: z.object({
    bm: sizes,
    bn: sizes,
    bk: sizes,
    rm: sizes,
    rn: sizes,
    split: sizes.optional(),
    half: flags.optional(),
    double: flags.optional(),
    stream: counts.optional(),
    splat: flags.optional(),
    kpair: flags.optional(),
    dp: flags.optional(),
    fold: sizes.optional(),
    kq: flags.optional(),
  }).strict().optional(),
  gemv: z.object({
    nc: sizes,
    cn: sizes,
    lanes: sizes,
    rm: sizes,
    vec: sizes,
    subgroup: flags,
    dot: flags.optional(),
    rw: sizes.optional(),
    unroll: counts.optional(),
    xs: counts.optional(),
    xd: flags.optional(),
  }).strict().optional(),
}).strict().refine((s) => s.tile || s.gemv || s.outer, {
  message: "names no kernel family (tile, outer or gemv)",
});

function parseWith<T>(schema: z.ZodType<T>, text: string, file: string): T {
  let data: unknown;
  try {
    data = parseYaml(text);
  } catch (e) {
    throw new InputFileError(file, `not valid YAML (${(e as Error).message.split("\n")[0]})`);
  }
  const result = schema.safeParse(data);
  if (!result.success) {
    // A misspelt key is also a missing one: name the misspelling, it says more.
    const issues = result.error.issues;
    const issue = issues.find((i) => i.code === "unrecognized_keys") ?? issues[0];
    const field = issue.path.join(".");
    throw new InputFileError(
      file,
      `${field ? `field "${field}" ` : ""}${issue.message.toLowerCase()}`,
    );
  }
  return result.data;
}

async function readText(file: string): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new InputFileError(file, "no such file");
    throw e;
  }
}

/** Parses a problem spec from YAML text. */
export function parseProblem(text: string, file: string): ProjectionSpec {
  const spec = parseWith(problemSchema, text, file) as ProjectionSpec;
  try {
    validateSpec(spec);
  } catch (e) {
    throw new InputFileError(file, (e as Error).message);
  }
  return spec;
}

/** Reads a problem spec file. */
export async function loadProblem(file: string): Promise<ProjectionSpec> {
  return parseProblem(await readText(file), file);
}

/** Parses a search space from YAML text. */
export function parseSpace(text: string, file: string): SearchSpace {
  return parseWith(spaceSchema, text, file) as SearchSpace;
}

/** Reads a search space file. */
export async function loadSpace(file: string): Promise<SearchSpace> {
  return parseSpace(await readText(file), file);
}
