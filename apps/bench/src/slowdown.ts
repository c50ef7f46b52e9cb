/**
 * The GPU's clock-slowdown counters, read with `nvidia-smi` where it is on the PATH (NVIDIA hosts).
 * A lent H100 that ran hot read the same code 10-250% slower (BENCHMARKS.md "Session 10"), and
 * WebGPU exposes no clocks, so the report states how long the GPU was slowed during the run.
 */
import { spawnSync } from 'node:child_process';

/** Microseconds spent in each slowdown reason, summed over the host's GPUs. */
export type SlowdownCounters = Record<string, number>;

/** The "Clocks Event Reasons Counters" sections of `nvidia-smi -q -d PERFORMANCE`, summed per reason. */
export function parseSlowdownCounters(text: string): SlowdownCounters | undefined {
  const sections = text.split(/^\s*Clocks (?:Event|Throttle) Reasons Counters\s*$/m).slice(1);
  if (sections.length === 0) return undefined;
  const counters: SlowdownCounters = {};
  for (const section of sections) {
    // The section's rows, up to the first line that is not "Reason : N us".
    for (const line of section.split('\n').slice(1)) {
      const m = /^\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(\d+)\s*us\s*$/.exec(line);
      if (!m) break;
      counters[m[1]] = (counters[m[1]] ?? 0) + Number(m[2]);
    }
  }
  return counters;
}

export function readSlowdownCounters(): SlowdownCounters | undefined {
  const r = spawnSync('nvidia-smi', ['-q', '-d', 'PERFORMANCE'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 && typeof r.stdout === 'string' ? parseSlowdownCounters(r.stdout) : undefined;
}

/** One report line: the reasons whose counters grew between the two readings. */
export function slowdownLine(before: SlowdownCounters | undefined, after: SlowdownCounters | undefined): string {
  if (!before || !after) return 'GPU slowdown during the run: not known (no nvidia-smi)';
  const grew = Object.keys(after)
    .map((k) => [k, after[k] - (before[k] ?? 0)] as const)
    .filter(([k, d]) => d > 0 && k !== 'Sync Boost');
  if (grew.length === 0) return 'GPU slowdown during the run (nvidia-smi): none';
  return `GPU slowdown during the run (nvidia-smi): ${grew.map(([k, d]) => `${k} ${(d / 1e6).toFixed(1)} s`).join(', ')}; times may read slow`;
}
