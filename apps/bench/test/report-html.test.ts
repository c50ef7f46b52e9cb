import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type Report, renderHtml, suiteChartSvg } from '../src/report-html';

const here = dirname(fileURLToPath(import.meta.url));
const h100 = JSON.parse(readFileSync(join(here, '..', 'results', '2026-11-25-h100-decode.json'), 'utf8')) as Report;

describe('HTML report', () => {
  it('renders a chart per suite with every case, the roofline and the peer', () => {
    const html = renderHtml(h100);
    expect(html).toContain('<svg');
    expect(html).toContain(`stream read ${h100.ceilings.readGBs.toFixed(0)} GB/s`);
    for (const r of h100.results) expect(html).toContain(r.name);
    expect(html).toContain('torch SDPA');
    expect((html.match(/class="ours"/g) ?? []).length).toBe(h100.results.length);
    expect((html.match(/class="peer"/g) ?? []).length).toBe(h100.peer!.results.length);
  });

  it('scales bars to GB/s and escapes names', () => {
    const svg = suiteChartSvg(
      [{ suite: 'decode', name: 'a<b>&', timeMs: 1, p10Ms: 1, p90Ms: 1, gbs: 500, tflops: 0, bytes: 0, flops: 0, planCpuUs: 0, runCpuUs: 0, timing: 'timestamp' }],
      1000,
    );
    expect(svg).toContain('a&lt;b&gt;&amp;');
    const width = Number(/<rect x="\d+" y="[\d.]+" width="([\d.]+)"/.exec(svg)![1]);
    expect(width).toBeCloseTo((500 * 420) / 1050, 0); // half the roofline, axis at 1.05 x roofline
  });

  it('charts compute-bound suites in TFLOP/s against the FMA ceiling', () => {
    const r = { suite: 'prefill', name: 'p', timeMs: 1, p10Ms: 1, p90Ms: 1, gbs: 5, tflops: 30, bytes: 0, flops: 3e10, planCpuUs: 0, runCpuUs: 0, timing: 'timestamp' as const };
    const svg = suiteChartSvg([r], 60, { device: 'x', torch: 'y', results: [{ name: 'p', timeMs: 0.5, gbs: 10, note: '' }] }, 'tflops');
    expect(svg).toContain('f32 FMA 60.0 TFLOP/s');
    expect(svg).toContain('30.00 TFLOP/s · 50.0%');
    expect(svg).toContain('torch: 60.00 TFLOP/s');
  });
});
