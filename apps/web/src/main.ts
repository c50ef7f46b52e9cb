/**
 * The page: creates a webinfer context on navigator.gpu, runs every case against the float64
 * reference, and shows a table. The outcome is also left on `window.__webinfer` and
 * `document.body.dataset.status` for the end-to-end test.
 */
import * as attention from '@webinfer/attention';
import * as coreBuffers from '@webinfer/core-buffers';
import { createContext } from '@webinfer/core-buffers';
import * as cudaGraph from '@webinfer/cuda-graph';
import * as decode from '@webinfer/decode';
import * as mla from '@webinfer/mla';
import * as prefill from '@webinfer/prefill';
import * as reference from '@webinfer/reference';
import * as xqa from '@webinfer/xqa';
import { type CaseResult, runCases } from './cases';

/** Every package's ESM build, imported as a browser app imports it (counted exports prove it loaded). */
const PACKAGES: Record<string, object> = {
  'core-buffers': coreBuffers,
  reference,
  decode,
  prefill,
  attention,
  'cuda-graph': cudaGraph,
  mla,
  xqa,
};

declare global {
  interface Window {
    __webinfer?: { done: boolean; passed: number; failed: number; results: CaseResult[]; packages: Record<string, number>; error?: string };
  }
}

const el = (id: string) => document.getElementById(id) as HTMLElement;

function row(r: CaseResult): HTMLTableRowElement {
  const tr = document.createElement('tr');
  const cells: [string, string][] = [
    [r.name, ''],
    [r.passed ? 'pass' : 'FAIL', r.passed ? 'pass' : 'fail'],
    [Number.isFinite(r.maxAbsError) ? r.maxAbsError.toExponential(2) : '–', 'num'],
    [r.ms.toFixed(1), 'num'],
  ];
  for (const [text, cls] of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.append(td);
  }
  const detail = document.createElement('div');
  detail.className = 'detail';
  detail.textContent = r.detail;
  tr.cells[0].append(detail);
  return tr;
}

async function main(): Promise<void> {
  const ctx = await createContext();
  const info = ctx.adapterInfo;
  const features = [...ctx.features].filter((f) => /f16|subgroup|timestamp/.test(f)).join(', ') || 'none';
  el('device').textContent = `device: ${info.description || info.vendor || 'unknown'} ${info.architecture || ''} · features: ${features} · subgroup size ${ctx.subgroupMinSize}–${ctx.subgroupMaxSize}`;
  const packages = Object.fromEntries(Object.entries(PACKAGES).map(([name, m]) => [name, Object.keys(m).length]));
  el('packages').textContent = `packages loaded: ${Object.entries(packages).map(([n, k]) => `@webinfer/${n} (${k} exports)`).join(', ')}`;
  // ?only=<text> runs the cases whose name contains it.
  const only = new URLSearchParams(location.search).get('only') ?? undefined;
  const results = await runCases(ctx, (r) => el('rows').append(row(r)), only);
  const passed = results.filter((r) => r.passed).length;
  const failed = results.length - passed;
  el('summary').innerHTML = failed === 0 ? `<span class="pass">all ${passed} cases passed</span>` : `<span class="fail">${failed} of ${results.length} cases failed</span>`;
  window.__webinfer = { done: true, passed, failed, results, packages };
  document.body.dataset.status = failed === 0 ? 'pass' : 'fail';
  ctx.dispose();
}

main().catch((e) => {
  el('summary').innerHTML = `<span class="fail">error: ${String(e)}</span>`;
  window.__webinfer = { done: true, passed: 0, failed: 1, results: [], packages: {}, error: String(e) };
  document.body.dataset.status = 'fail';
});
