import assert from "node:assert/strict";
import { DEFAULT_BUCKETS, parseCli, resolveProblem, UsageError } from "../../tuner/cli.ts";
import { kimiLinearSpec } from "../../kernels/problem.ts";
import { configName } from "../../kernels/config.ts";
import { gemvConfig, ROOT, runCli, withTempDir } from "../helpers.ts";

/** `deno run -A tuner/cli.ts ...args` from the repository root. */
const cli = (...args: string[]) => runCli(args);

Deno.test("parseCli() applies the documented defaults", () => {
  const o = parseCli(["--problem", "tiny"]);
  assert.equal(o.problem, "tiny");
  assert.deepEqual(o.dtypes, ["f32"]);
  assert.deepEqual(o.buckets, DEFAULT_BUCKETS);
  assert.equal(DEFAULT_BUCKETS[0], 1);
  assert.equal(DEFAULT_BUCKETS[DEFAULT_BUCKETS.length - 1], 16384);
  assert.equal(o.strategy, "guided");
  assert.deepEqual(o.maxTrials, { percent: 15 });
  assert.equal(o.maxSeconds, 900);
  assert.equal(o.cacheDir, "cache");
  assert.equal(o.warmup, 3);
  assert.equal(o.repeats, 20);
  assert.equal(o.unfused, true);
  assert.equal(o.stage, "fused");
  assert.equal(o.quiet, false);
  assert.equal(o.help, false);
  assert.ok(Number.isInteger(o.seed) && o.seed >= 0);
});

Deno.test("parseCli() reads lists and numbers", () => {
  const o = parseCli([
    "--problem=kimi-linear-tp4",
    "--dtype",
    "f16, bf16",
    "--buckets",
    "1,3,16",
    "--max-trials",
    "3",
    "--seed",
    "42",
    "--strategy",
    "exhaustive",
    "--no-unfused",
    "--quiet",
    "--stage",
    "batched",
  ]);
  assert.deepEqual(o.dtypes, ["f16", "bf16"]);
  assert.deepEqual(o.buckets, [1, 3, 16]);
  assert.equal(o.maxTrials, 3);
  assert.equal(o.seed, 42);
  assert.equal(o.strategy, "exhaustive");
  assert.equal(o.unfused, false);
  assert.equal(o.quiet, true);
  assert.equal(o.stage, "batched");
});

Deno.test("parseCli() takes --max-trials as a count or a share of the valid configs", () => {
  assert.deepEqual(parseCli(["--problem", "tiny", "--max-trials", "15%"]).maxTrials, {
    percent: 15,
  });
  assert.deepEqual(parseCli(["--problem", "tiny", "--max-trials", "2.5%"]).maxTrials, {
    percent: 2.5,
  });
  assert.equal(parseCli(["--problem", "tiny", "--max-trials", "12"]).maxTrials, 12);
});

Deno.test("parseCli() treats -h and --help as help, without needing --problem", () => {
  assert.equal(parseCli(["--help"]).help, true);
  assert.equal(parseCli(["-h"]).help, true);
});

Deno.test("parseCli() rejects bad flags and values with a UsageError naming them", () => {
  const cases: [string[], RegExp][] = [
    [["--problem", "tiny", "--bogus"], /bogus/],
    [["--problem", "tiny", "extra"], /extra/],
    [[], /--problem/],
    [["--problem", "tiny", "--dtype", "f64"], /f64/],
    [["--problem", "tiny", "--dtype", "f32,"], /dtype/],
    [["--problem", "tiny", "--buckets", "0"], /--buckets .*"0"/],
    [["--problem", "tiny", "--buckets", "abc"], /--buckets .*"abc"/],
    [["--problem", "tiny", "--buckets", "1,,2"], /--buckets/],
    [["--problem", "tiny", "--buckets", "1.5"], /--buckets/],
    [["--problem", "tiny", "--buckets", "-4"], /--buckets/],
    [["--problem", "tiny", "--max-trials", "0"], /--max-trials/],
    [["--problem", "tiny", "--max-trials", "0%"], /--max-trials .*percentage.*"0%"/],
    [["--problem", "tiny", "--max-trials", "150%"], /--max-trials .*"150%"/],
    [["--problem", "tiny", "--max-trials", "%"], /--max-trials/],
    [["--problem", "tiny", "--max-seconds", "1e3"], /--max-seconds/],
    [["--problem", "tiny", "--repeats", "x"], /--repeats/],
    [["--problem", "tiny", "--strategy", "genetic"], /genetic/],
    [["--problem", "tiny", "--stage", "both"], /--stage/],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseCli(args), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${args.join(" ")}: ${e}`);
      assert.match(e.message, message, args.join(" "));
      return true;
    });
  }
});

Deno.test("resolveProblem() finds problems by name and lists the known ones otherwise", async () => {
  assert.deepEqual(await resolveProblem("kimi-linear-tp2"), kimiLinearSpec({ tp: 2 }));
  assert.deepEqual(
    await resolveProblem(`${ROOT}problems/kimi-linear-tp8.yaml`),
    kimiLinearSpec({ tp: 8 }),
  );
  await assert.rejects(resolveProblem("nosuch"), (e: unknown) => {
    assert.ok(e instanceof UsageError);
    assert.match(e.message, /"nosuch"/);
    assert.match(e.message, /kimi-linear-tp4/, "lists the known problems");
    return true;
  });
});

Deno.test("the CLI prints its usage for --help and exits 0", async () => {
  const r = await cli("--help");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Usage/);
  assert.match(r.stdout, /--problem/);
});

Deno.test("the CLI exits 2 naming the problem for each command-line mistake", async () => {
  const cases: [string[], RegExp][] = [
    [["--problem", "tiny", "--frobnicate"], /frobnicate/],
    [["--problem", "tiny", "--dtype", "f64"], /f64/],
    [["--problem", "tiny", "--buckets", "0"], /--buckets/],
    [["--problem", "tiny", "--buckets", "abc"], /abc/],
    [["--problem", "tiny", "--max-trials", "0"], /--max-trials/],
    [["--problem", "tiny", "--max-trials", "0%"], /--max-trials .*percentage.*"0%"/],
    [["--problem", "tiny", "--max-trials", "150%"], /--max-trials .*"150%"/],
    [["--problem", "tiny", "--max-trials", "%"], /--max-trials/],
    [["--problem", "nosuch"], /nosuch/],
    [[], /--problem/],
  ];
  const results = await Promise.all(cases.map(([args]) => cli(...args)));
  results.forEach((r, i) => {
    const [args, message] = cases[i];
    assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, message, args.join(" "));
    assert.match(r.stderr, /--help/, "points at --help");
  });
});

Deno.test("the CLI prints the WGSL of one config with --print-wgsl", async () => {
  const r = await cli("--print-wgsl", "tile-bm32-bn32-bk8-rm4-rn4-v4", "--problem", "tiny");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /@compute/);
  assert.match(r.stdout, /@workgroup_size\(8, 8\)/);
  const gemv = configName(gemvConfig({ nc: 4, lanes: 8, vec: 2 }));
  const batched = await cli(
    "--print-wgsl",
    gemv,
    "--problem",
    "tiny",
    "--stage",
    "batched",
    "--dtype",
    "f16",
  );
  assert.equal(batched.code, 0, batched.stderr);
  assert.match(batched.stdout, /@compute/);
  const none = await cli(
    "--print-wgsl",
    gemv,
    "--problem",
    "llama3-8b-qkv",
    "--stage",
    "batched",
  );
  assert.equal(none.code, 2, none.stderr);
  assert.match(none.stderr, /no batched stage/);
  const bad = await cli("--print-wgsl", "nope", "--problem", "tiny");
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /nope/);
});

Deno.test("the CLI rejects malformed and misspelt problem files, naming the file", async () => {
  await withTempDir("cli_test_", async (dir) => {
    const malformed = `${dir}/malformed.yaml`;
    await Deno.writeTextFile(malformed, "name: x\nk: [64\nsegments: {\n");
    const unknownKey = `${dir}/unknown-key.yaml`;
    await Deno.writeTextFile(
      unknownKey,
      "name: x\nk: 64\nsegments:\n  - { name: a, n: 8 }\nsegmnets: []\n",
    );
    const missing = `${dir}/missing.yaml`;
    for (
      const [file, field] of [[malformed, /YAML/], [unknownKey, /segmnets/], [
        missing,
        /no such file/,
      ]] as const
    ) {
      const r = await cli("--problem", file, "--cache-dir", dir);
      assert.notEqual(r.code, 0, `${file} exits non-zero`);
      assert.ok(r.stderr.includes(file), `names the file: ${r.stderr}`);
      assert.match(r.stderr, field);
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["malformed.yaml", "unknown-key.yaml"],
      "nothing was written",
    );
  });
});

/** Copies the files the CLI needs into `dir`. */
async function copyRepo(dir: string) {
  const copy = async (from: string, to: string) => {
    const info = await Deno.stat(from);
    if (info.isDirectory) {
      await Deno.mkdir(to, { recursive: true });
      for await (const e of Deno.readDir(from)) await copy(`${from}/${e.name}`, `${to}/${e.name}`);
    } else await Deno.copyFile(from, to);
  };
  for (const name of ["kernels", "tuner", "cache", "dispatch", "problems", "mod.ts", "deno.json"]) {
    await copy(`${ROOT}${name}`, `${dir}/${name}`);
  }
}

Deno.test({
  name: "the CLI finds problems by name in a checkout whose path has a space",
  fn: async () => {
    await withTempDir("cli test ", async (dir) => {
      await copyRepo(dir);
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--no-lock",
          "tuner/cli.ts",
          "--problem",
          "tiny",
          "--print-wgsl",
          "tile-bm32-bn32-bk8-rm4-rn4-v4",
        ],
        cwd: dir,
        env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.match(new TextDecoder().decode(out.stdout), /@compute/);
    });
  },
});
