/**
 * Context options for package tests from the environment: `WEBINFER_TEST_WORKGROUP_STORAGE=32768`
 * caps the context's workgroup memory, so kernels plan as on a typical browser device (for the
 * device-test bundles on GPU hosts, which offer more). Pass the result to `createContext`.
 */
export function testContextOptions(): { limits?: { maxComputeWorkgroupStorageSize: number } } {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const bytes = Number(env?.WEBINFER_TEST_WORKGROUP_STORAGE ?? 0);
  return bytes > 0 ? { limits: { maxComputeWorkgroupStorageSize: bytes } } : {};
}
