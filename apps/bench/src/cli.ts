/**
 * webinfer bench: runs kernel suites on the default GPU, after measuring the device's ceilings in
 * the same process, and reports time, GB/s, TFLOP/s and the fraction of the roofline.
 *
 *   webinfer-bench [--suite decode|prefill|attention|graph|mla|xqa|all] [--quick] [--verify] [--json out.json] [--md out.md]
 */

import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createContext, DEFAULT_DAWN_FLAGS } from '@webinfer/core-buffers';
import { measureCeilings } from './ceilings';
import { renderHtml } from './report-html';
import { readSlowdownCounters, slowdownLine } from './slowdown';
import { runAttentionSuite } from './suites/attention';
import { profileDecode, runDecodeSuite } from './suites/decode';
import { runGraphSuite } from './suites/graph';
import { profileMla, runMlaSuite, runXqaSuite } from './suites/mla-xqa';
import { runPlanCpuSuite } from './suites/plan-cpu';
import { profilePrefill, runPrefillSuite } from './suites/prefill';
import { probeGemm } from './suites/probe-gemm';
import { probeSubgroupMatrix } from './suites/probe-subgroup-matrix';
import type { CaseResult, SuiteOptions } from './types';

interface Args {
  suite: string;
  quick: boolean;
  verify: boolean;
  json?: string;
  md?: string;
  html?: string;
  filter?: string;
  peer?: string;
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
    else if (a === '--html') args.html = argv[++i];
    else if (a === '--filter') args.filter = argv[++i];
    else if (a === '--peer') args.peer = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log('usage: webinfer-bench [--suite decode|prefill|attention|graph|mla|xqa|all] [--quick] [--verify] [--json out.json] [--md out.md] [--html out.html] [--filter substring] [--peer torch]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return args;
}

const SUITES: Record<string, (ctx: Awaited<ReturnType<typeof createContext>>, o: SuiteOptions) => Promise<CaseResult[]>> = {
  decode: runDecodeSuite,
  prefill: runPrefillSuite,
  'profile-prefill': profilePrefill,
  attention: runAttentionSuite,
  graph: runGraphSuite,
  mla: runMlaSuite,
  'profile-mla': profileMla,
  xqa: runXqaSuite,
  'profile-decode': profileDecode,
  'probe-subgroup-matrix': probeSubgroupMatrix,
  'probe-gemm': probeGemm,
  'plan-cpu': runPlanCpuSuite,
};

interface PeerResult {
  name: string;
  timeMs: number;
  gbs: number;
  note: string;
}

/**
 * Runs peers/torch_sdpa.py (PyTorch SDPA on CUDA) on the decode cases. Returns undefined, with a
 * message, when python3, torch or a CUDA GPU is missing: the bench then reports alone.
 */
function runTorchPeer(results: CaseResult[]): { device: string; torch: string; results: PeerResult[] } | undefined {
  const script = join(dirname(fileURLToPath(import.meta.url)), '..', 'peers', 'torch_sdpa.py');
  if (!existsSync(script)) {
    console.error(`[bench] torch peer: ${script} not found`);
    return undefined;
  }
  const cases = results.filter((r) => r.shape).map((r) => ({ name: r.name, ...r.shape }));
  const proc = spawnSync('python3', [script], { input: JSON.stringify(cases), encoding: 'utf8', maxBuffer: 1 << 24 });
  if (proc.status !== 0) {
    console.error(`[bench] torch peer unavailable: ${(proc.stdout || proc.stderr || String(proc.error)).trim().slice(0, 300)}`);
    return undefined;
  }
  return JSON.parse(proc.stdout);
}

function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  // WEBINFER_BENCH_DAWN_ENABLE=toggle,...: extra Dawn toggles for experiments (e.g. disable_robustness).
  const extra = process.env.WEBINFER_BENCH_DAWN_ENABLE;
  // WEBINFER_BENCH_WORKGROUP_STORAGE=32768: plan kernels as on a device with that much workgroup
  // memory (most browsers give 32 KB).
  const storage = Number(process.env.WEBINFER_BENCH_WORKGROUP_STORAGE ?? 0);
  const ctx = await createContext({
    ...(extra ? { dawnFlags: DEFAULT_DAWN_FLAGS.map((f) => (f.startsWith('enable-dawn-features=') ? `${f},${extra}` : f)) } : {}),
    ...(storage > 0 ? { limits: { maxComputeWorkgroupStorageSize: storage } } : {}),
  });
  const info = ctx.adapterInfo;
  const device = info.description || `${info.vendor} ${info.architecture}`;
  // One status line, redrawn: a bar when the message says "i/N", then the case.
  const progress = (msg: string) => {
    const m = /^\w+ (\d+)\/(\d+)/.exec(msg);
    const bar = m ? `[${'#'.repeat(Math.round((20 * Number(m[1])) / Number(m[2]))).padEnd(20, '.')}] ` : '';
    process.stderr.write(`\r\x1b[K[bench] ${bar}${msg}`);
  };
  const slowdownBefore = readSlowdownCounters();
  progress('measuring ceilings');
  const ceilings = await measureCeilings(ctx, args.quick);
  const suites = args.suite === 'all' ? Object.keys(SUITES).filter((s) => !s.startsWith('profile') && !s.startsWith('probe') && s !== 'plan-cpu') : [args.suite];
  const results: CaseResult[] = [];
  for (const s of suites) {
    const run = SUITES[s];
    if (!run) throw new Error(`unknown suite ${s}; have ${Object.keys(SUITES).join(', ')}`);
    results.push(...(await run(ctx, { quick: args.quick, verify: args.verify, progress, filter: args.filter })));
  }
  process.stderr.write('\r\x1b[K');
  const slowdownAfter = readSlowdownCounters();
  const peer = args.peer === 'torch' ? runTorchPeer(results) : undefined;
  if (args.peer && args.peer !== 'torch') throw new Error(`unknown peer ${args.peer}; have torch`);
  const peerOf = (name: string) => peer?.results.find((p) => p.name === name);
  const lines = [
    `device: ${device} | features: ${[...ctx.features].filter((f) => /f16|subgroup|timestamp/.test(f)).join(', ')} | workgroup memory: ${ctx.limits.maxComputeWorkgroupStorageSize} bytes`,
    `ceilings (same run): stream read ${fmt(ceilings.readGBs)} GB/s, f32 FMA ${fmt(ceilings.fmaTflops, 2)} TFLOP/s; timing: ${ceilings.timing}`,
    slowdownLine(slowdownBefore, slowdownAfter),
    peer ? `peer: PyTorch ${peer.torch} scaled_dot_product_attention on ${peer.device} (contiguous KV, CUDA events)` : 'peer: none',
    '',
    '| suite | case | time (ms) | p10–p90 (ms) | GB/s | % of read | TFLOP/s | plan CPU (µs) | run CPU (µs) | verify | torch (ms) | torch time / ours |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) => {
      const p = peerOf(r.name);
      const peerCols = p ? `${fmt(p.timeMs, 4)}${p.note ? ' *' : ''} | ${fmt(p.timeMs / r.timeMs, 2)}×` : '- | -';
      return `| ${r.suite} | ${r.name} | ${fmt(r.timeMs, 4)} | ${fmt(r.p10Ms, 4)}–${fmt(r.p90Ms, 4)} | ${fmt(r.gbs, 0)} | ${fmt((100 * r.gbs) / ceilings.readGBs)}% | ${fmt(r.tflops, 2)} | ${fmt(r.planCpuUs)} | ${fmt(r.runCpuUs)} | ${r.verified ?? 'not run'} | ${peerCols} |`;
    }),
    ...(peer?.results.some((p) => p.note) ? ['', '\\* torch has no fp8 KV in SDPA: timed with f16 KV.'] : []),
  ];
  const md = lines.join('\n');
  console.log(md);
  if (args.md) writeFileSync(args.md, `${md}\n`);
  const date = new Date().toISOString();
  if (args.html) writeFileSync(args.html, renderHtml({ device, date, ceilings, results, peer }));
  if (args.json) {
    writeFileSync(args.json, JSON.stringify({ device, adapter: info, date, ceilings, slowdown: { before: slowdownBefore, after: slowdownAfter }, results, peer }, null, 2));
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
