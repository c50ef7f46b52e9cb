/**
 * End to end in a real browser: Debian's Chromium, headless, WebGPU on SwiftShader (subgroups, no
 * shader-f16, so the packed-f16 kernels run), opens the built page from a local server and
 * checks that every case passed. Required in CI (WEBINFER_BROWSER_TESTS=1 or CI=true); skipped
 * elsewhere when there is no Chromium.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');
const chromiumPath = process.env.WEBINFER_CHROMIUM ?? '/usr/bin/chromium';
const required = process.env.CI === 'true' || process.env.WEBINFER_BROWSER_TESTS === '1';
const available = existsSync(chromiumPath);

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

/** Serves dist/ on 127.0.0.1 (a secure context, so navigator.gpu exists). */
function serve(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(dist, path === '/' ? 'index.html' : path);
    if (!file.startsWith(dist) || !existsSync(file)) {
      res.statusCode = 404;
      res.end('not found');
      return;
    }
    res.setHeader('content-type', TYPES[extname(file)] ?? 'application/octet-stream');
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` })));
}

describe.skipIf(!available && !required)('the page in headless Chromium (WebGPU on SwiftShader)', () => {
  let server: Server | undefined;
  let url = '';
  beforeAll(async () => {
    if (!available) throw new Error(`Chromium not found at ${chromiumPath}: install Debian's chromium (scripts/install-browser.sh)`);
    if (!existsSync(join(dist, 'index.html'))) throw new Error('apps/web/dist is missing: run pnpm build first');
    ({ server, url } = await serve());
  });
  afterAll(() => server?.close());

  it('bundles no Node-only code', () => {
    for (const f of readdirSync(join(dist, 'assets'))) {
      const text = readFileSync(join(dist, 'assets', f), 'utf8');
      expect(text, f).not.toMatch(/from\s*["']node:|require\(["']node:|\.node["']/);
    }
  });

  it('loads every package and passes every case', async () => {
    const profile = mkdtempSync(join(tmpdir(), 'webinfer-chromium-'));
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath,
      headless: true,
      viewport: { width: 1100, height: 700 },
      args: [
        '--enable-unsafe-webgpu',
        '--enable-features=Vulkan',
        '--use-vulkan=swiftshader',
        '--use-webgpu-adapter=swiftshader',
        '--no-sandbox',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
    try {
      const page = await browser.newPage();
      const logs: string[] = [];
      page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
      await page.goto(url);
      await page.waitForFunction(() => window.__webinfer?.done === true, null, { timeout: 280_000 });
      const outcome = await page.evaluate(() => window.__webinfer!);
      mkdirSync(join(here, '..', 'results'), { recursive: true });
      await page.screenshot({ path: join(here, '..', 'results', 'chromium.png'), fullPage: true });
      const failures = outcome.results.filter((r) => !r.passed).map((r) => `${r.name}: ${r.detail}`);
      expect(outcome.error, logs.join('\n')).toBeUndefined();
      expect(failures, logs.join('\n')).toEqual([]);
      expect(outcome.passed).toBeGreaterThanOrEqual(4);
      expect(Object.keys(outcome.packages).sort()).toEqual(['attention', 'core-buffers', 'cuda-graph', 'decode', 'mla', 'prefill', 'reference', 'xqa']);
      for (const [name, count] of Object.entries(outcome.packages)) expect(count, name).toBeGreaterThan(0);
    } finally {
      await browser.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });
});
