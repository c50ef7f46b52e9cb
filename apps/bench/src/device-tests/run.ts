/**
 * Entry of one device-test bundle (see tsup.config.ts): the bundler puts a package test file
 * before this, with `vitest` resolved to ./vitest-shim, so the file has registered its tests.
 */
import { runRegistered } from './vitest-shim';

export async function main(file: string): Promise<void> {
  const lines: string[] = [];
  const log = (l: string) => {
    lines.push(l);
    console.log(l);
  };
  log(`# ${file}`);
  const [passed, failed] = await runRegistered(log);
  log(`# ${file}: ${passed} passed, ${failed} failed`);
  process.exitCode = failed > 0 ? 1 : 0;
}
