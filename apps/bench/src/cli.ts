/**
 * webinfer bench: runs kernel suites on the default GPU, after measuring the device's ceilings in
 * the same process, and reports time, GB/s, TFLOP/s and the fraction of the roofline.
 *
 *   webinfer-bench [--suite decode|all] [--quick] [--verify] [--json out.json] [--md out.md]
 */
import { writeFileSync } from 'node:fs';
import { createContext } from '@webinfer/core-buffers';
import { measureCeilings } from './ceilings';
import { profileDecode, runDecodeSuite } from './suites/decode';
import type { CaseResult, SuiteOptions } from './types';

interface Args {
  suite: string;
  quick: boolean;
  verify: boolean;
  json?: string;
  md?: string;
  filter?: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { suite: 'all', quick: false, verify: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') args.quick = true;
    else if (a === '--verify') args.verify = true;
    else if (a === '--suite') args.suite = argv[++i];
    else if (a === '--json') args.json = argv[++i];
    else if (a === '--md') args.md = argv[++i];
    else if (a === '--filter') args.filter = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log('usage: webinfer-bench [--suite decode|all] [--quick] [--verify] [--json out.json] [--md out.md] [--filter substring]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

const SUITES: Record<string, (ctx: Awaited<ReturnType<typeof createContext>>, o: SuiteOptions) => Promise<CaseResult[]>> = {
  decode: runDecodeSuite,
  'profile-decode': profileDecode,
};

function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const ctx = await createContext();
  const info = ctx.adapterInfo;
  const device = info.description || `${info.vendor} ${info.architecture}`;
  const progress = (msg: string) => process.stderr.write(`\r\x1b[K[bench] ${msg}`);
  progress('measuring ceilings');
  const ceilings = await measureCeilings(ctx, args.quick);
  const suites = args.suite === 'all' ? Object.keys(SUITES).filter((s) => !s.startsWith('profile')) : [args.suite];
  const results: CaseResult[] = [];
  for (const s of suites) {
    const run = SUITES[s];
    if (!run) throw new Error(`unknown suite ${s}; have ${Object.keys(SUITES).join(', ')}`);
    results.push(...(await run(ctx, { quick: args.quick, verify: args.verify, progress, filter: args.filter })));
  }
  process.stderr.write('\r\x1b[K');
  const lines = [
    `device: ${device} | features: ${[...ctx.features].filter((f) => /f16|subgroup|timestamp/.test(f)).join(', ')}`,
    `ceilings (same run): stream read ${fmt(ceilings.readGBs)} GB/s, f32 FMA ${fmt(ceilings.fmaTflops, 2)} TFLOP/s; timing: ${ceilings.timing}`,
    '',
    '| suite | case | time (ms) | p10–p90 (ms) | GB/s | % of read | TFLOP/s | plan CPU (µs) | run CPU (µs) | verify |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.suite} | ${r.name} | ${fmt(r.timeMs, 4)} | ${fmt(r.p10Ms, 4)}–${fmt(r.p90Ms, 4)} | ${fmt(r.gbs, 0)} | ${fmt((100 * r.gbs) / ceilings.readGBs)}% | ${fmt(r.tflops, 2)} | ${fmt(r.planCpuUs)} | ${fmt(r.runCpuUs)} | ${r.verified ?? 'not run'} |`,
    ),
  ];
  const md = lines.join('\n');
  console.log(md);
  if (args.md) writeFileSync(args.md, `${md}\n`);
  if (args.json) {
    writeFileSync(args.json, JSON.stringify({ device, adapter: info, date: new Date().toISOString(), ceilings, results }, null, 2));
  }
  ctx.dispose();
  return results.some((r) => r.verified?.startsWith('FAILED')) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
