/**
 * The HTML report: one self-contained page with the run's context, an SVG chart per suite (GB/s
 * of each case against the stream-read roofline measured in the same run, and the torch peer when
 * present) and the full table.
 */
import type { CaseResult } from './types';

export interface Report {
  device: string;
  date: string;
  ceilings: { readGBs: number; fmaTflops: number; timing: string };
  results: CaseResult[];
  peer?: { device: string; torch: string; results: { name: string; timeMs: number; gbs: number; note: string }[] };
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function num(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '–';
}

/** What a suite's chart shows: bandwidth for memory-bound kernels, FLOP rate for compute-bound ones. */
export type ChartMetric = 'gbs' | 'tflops';

/** Suites whose kernels are compute-bound on a large GPU (charted in TFLOP/s against the FMA ceiling). */
const COMPUTE_BOUND = new Set(['prefill', 'mla', 'attention']);

/** Horizontal bars per case (GB/s or TFLOP/s), the measured ceiling as a dashed line. */
export function suiteChartSvg(results: CaseResult[], roofline: number, peer?: Report['peer'], metric: ChartMetric = 'gbs'): string {
  const rowH = 26;
  const labelW = 520;
  const barW = 420;
  const top = 30;
  const unit = metric === 'gbs' ? 'GB/s' : 'TFLOP/s';
  const digits = metric === 'gbs' ? 0 : 2;
  const value = (r: CaseResult) => (metric === 'gbs' ? r.gbs : r.tflops);
  // The peer computes the same bytes and FLOPs: its rate follows from its time.
  const peerValue = (r: CaseResult, p: { timeMs: number; gbs: number }) => (metric === 'gbs' ? p.gbs : r.flops / (p.timeMs * 1e-3) / 1e12);
  const maxV = Math.max(roofline, ...results.map((r) => (Number.isFinite(value(r)) ? value(r) : 0)));
  const scale = barW / (maxV * 1.05 || 1);
  const height = top + results.length * rowH + 30;
  const parts: string[] = [];
  results.forEach((r, i) => {
    const y = top + i * rowH;
    const v = value(r);
    const w = Number.isFinite(v) ? v * scale : 0;
    const pct = roofline > 0 ? (100 * v) / roofline : Number.NaN;
    parts.push(`<text x="${labelW - 8}" y="${y + 15}" text-anchor="end" class="label">${esc(r.name)}</text>`);
    parts.push(`<rect x="${labelW}" y="${y + 3}" width="${w.toFixed(1)}" height="12" class="ours"><title>${esc(r.name)}: ${num(v, digits)} ${unit}</title></rect>`);
    const p = peer?.results.find((x) => x.name === r.name);
    if (p) {
      const pv = peerValue(r, p);
      parts.push(`<rect x="${labelW}" y="${y + 16}" width="${Math.min(barW + 140, pv * scale).toFixed(1)}" height="5" class="peer"><title>torch: ${num(pv, digits)} ${unit}</title></rect>`);
    }
    parts.push(`<text x="${labelW + w + 6}" y="${y + 14}" class="value">${num(v, digits)} ${unit} · ${num(pct, 1)}%</text>`);
  });
  const rx = labelW + roofline * scale;
  const ceiling = metric === 'gbs' ? `stream read ${num(roofline, 0)} GB/s` : `f32 FMA ${num(roofline, 1)} TFLOP/s`;
  parts.push(`<line x1="${rx.toFixed(1)}" y1="${top - 8}" x2="${rx.toFixed(1)}" y2="${height - 24}" class="roof"/>`);
  parts.push(`<text x="${rx.toFixed(1)}" y="${top - 12}" text-anchor="middle" class="value">${ceiling}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + barW + 160}" height="${height}" role="img"><title>${unit} per case against the ${ceiling} ceiling</title>${parts.join('')}</svg>`;
}

export function renderHtml(report: Report): string {
  const suites = [...new Set(report.results.map((r) => r.suite))];
  const charts = suites
    .map((s) => {
      const metric: ChartMetric = COMPUTE_BOUND.has(s) ? 'tflops' : 'gbs';
      const rs = report.results.filter((r) => r.suite === s && Number.isFinite(metric === 'gbs' ? r.gbs : r.tflops));
      const ceiling = metric === 'gbs' ? report.ceilings.readGBs : report.ceilings.fmaTflops;
      return rs.length ? `<h2>${esc(s)}</h2>${suiteChartSvg(rs, ceiling, report.peer, metric)}` : '';
    })
    .join('\n');
  const peerOf = (name: string) => report.peer?.results.find((p) => p.name === name);
  const rows = report.results
    .map((r) => {
      const p = peerOf(r.name);
      const ok = r.verified === undefined ? 'not run' : r.verified;
      return `<tr><td>${esc(r.suite)}</td><td>${esc(r.name)}</td><td>${num(r.timeMs, 4)}</td><td>${num(r.p10Ms, 4)}–${num(r.p90Ms, 4)}</td><td>${num(r.gbs, 0)}</td><td>${num((100 * r.gbs) / report.ceilings.readGBs, 1)}%</td><td>${num(r.tflops, 2)}</td><td>${num(r.planCpuUs, 1)}</td><td>${num(r.runCpuUs, 1)}</td><td class="${ok.startsWith('ok') ? 'ok' : ok.startsWith('FAILED') ? 'bad' : ''}">${esc(ok)}</td><td>${p ? `${num(p.timeMs, 4)}${p.note ? ' *' : ''}` : '–'}</td><td>${p ? `${num(p.timeMs / r.timeMs, 2)}×` : '–'}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>webinfer bench — ${esc(report.device)}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 24px; color: #1b1f24; }
table { border-collapse: collapse; margin-top: 16px; }
th, td { padding: 4px 8px; border-bottom: 1px solid #d8dee4; text-align: right; }
td:nth-child(2), th:nth-child(2), td:first-child, th:first-child { text-align: left; }
.ok { color: #1a7f37; } .bad { color: #cf222e; font-weight: 600; }
svg .label, svg .value { font: 12px system-ui, sans-serif; fill: #1b1f24; }
svg .ours { fill: #0969da; } svg .peer { fill: #bf8700; }
svg .roof { stroke: #cf222e; stroke-dasharray: 4 3; }
.legend span { display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin: 0 4px 0 12px; }
</style></head><body>
<h1>webinfer bench</h1>
<p><b>${esc(report.device)}</b> · ${esc(report.date)} · timing: ${esc(report.ceilings.timing)}<br>
Ceilings measured in the same run: stream read ${num(report.ceilings.readGBs, 0)} GB/s, f32 FMA ${num(report.ceilings.fmaTflops, 1)} TFLOP/s.
${report.peer ? `<br>Peer: PyTorch ${esc(report.peer.torch)} scaled_dot_product_attention on ${esc(report.peer.device)} (contiguous KV).` : ''}</p>
<p class="legend"><span style="background:#0969da"></span>webinfer${report.peer ? '<span style="background:#bf8700"></span>torch SDPA' : ''}<span style="border-top:2px dashed #cf222e;height:0"></span>ceiling measured in the run (GB/s for memory-bound suites, f32 FMA TFLOP/s for prefill, attention and MLA; torch uses tensor cores)</p>
${charts}
<table><thead><tr><th>suite</th><th>case</th><th>time (ms)</th><th>p10–p90 (ms)</th><th>GB/s</th><th>% of read</th><th>TFLOP/s</th><th>plan CPU (µs)</th><th>run CPU (µs)</th><th>verify</th><th>torch (ms)</th><th>torch time / ours</th></tr></thead>
<tbody>
${rows}
</tbody></table>
${report.peer?.results.some((p) => p.note) ? '<p>* torch SDPA has no fp8 KV: timed with f16 KV.</p>' : ''}
</body></html>
`;
}
