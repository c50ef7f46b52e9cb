/**
 * Smoke test of the benchmark CLI on the smallest configurations: it must verify every case
 * against the reference and report a time and bandwidth for each (runs the built bundle, which
 * `pnpm test` builds first).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cli.js');

describe('webinfer-bench --quick --verify', () => {
  it.runIf(existsSync(cli))('reports a verified number for every case', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'bench-')), 'bench.json');
    execFileSync(process.execPath, [cli, '--quick', '--verify', '--json', out], { stdio: 'pipe', timeout: 600_000 });
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.ceilings.readGBs).toBeGreaterThan(0);
    expect(report.results.length).toBeGreaterThan(0);
    for (const r of report.results) {
      expect(r.timeMs, r.name).toBeGreaterThan(0);
      expect(Number.isFinite(r.gbs), r.name).toBe(true);
      expect(r.verified, r.name).toMatch(/^ok/);
    }
  });
});
