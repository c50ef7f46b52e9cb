/**
 * The GPU context: one device plus what it can do. Every webinfer call takes one.
 *
 * In a browser the device comes from `navigator.gpu`; in Node from the `webgpu` package (Dawn),
 * loaded lazily so browser bundles never pull it in; or the caller hands over a `GPUDevice` it
 * already owns (an engine's device), which webinfer then never destroys.
 */
import type { DType } from './dtype';
import { DisposedError, UnsupportedFeatureError, WebInferError } from './errors';
import { Tensor, type TensorData } from './tensor';

/** Features webinfer asks for when the adapter offers them; each unlocks a faster kernel path. */
export const HELPFUL_FEATURES = [
  'shader-f16',
  'subgroups',
  'timestamp-query',
  'chromium-experimental-subgroup-matrix',
] as const;

/**
 * Dawn instance toggles used in Node: `allow_unsafe_apis` exposes the experimental
 * subgroup-matrix feature, `vulkan_enable_f16_on_nvidia` stops Dawn hiding `shader-f16` on
 * NVIDIA's Vulkan driver, and turning off `timestamp_quantization` gives full-resolution GPU timers.
 */
export const DEFAULT_DAWN_FLAGS = [
  'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia',
  'disable-dawn-features=timestamp_quantization',
];

export interface CreateContextOptions {
  /** Use this device (e.g. an engine's); webinfer will not destroy it on `dispose()`. */
  device?: GPUDevice;
  /** Use this adapter instead of requesting one. */
  adapter?: GPUAdapter;
  powerPreference?: GPUPowerPreference;
  /** Node only: flags for the Dawn instance (`webgpu`'s `create()`); default DEFAULT_DAWN_FLAGS. */
  dawnFlags?: string[];
  /**
   * Features not to request even if offered, e.g. `['shader-f16']` to exercise the packed-u32
   * f16 path that browsers without f16 take.
   */
  disableFeatures?: string[];
  /** Extra features to require; creation fails with UnsupportedFeatureError if missing. */
  requiredFeatures?: GPUFeatureName[];
  /** Label for the device. */
  label?: string;
  /**
   * Caps on the limits createContext raises to the adapter's maximum, e.g.
   * `{ maxComputeWorkgroupStorageSize: 32768 }` to plan kernels as on a typical browser device.
   */
  limits?: Partial<Record<RaisedLimit, number>>;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
}

/** One f16 subgroup-matrix (tensor core) shape the device offers. */
export interface SubgroupMatrixConfig {
  M: number;
  N: number;
  K: number;
  componentType: string;
  resultComponentType: string;
}

type GpuLike = { requestAdapter(options?: GPURequestAdapterOptions): Promise<GPUAdapter | null> };

// Dawn's instance must outlive every adapter and device made from it (else its event loop touches
// freed memory), so Node instances are kept for the life of the process, one per flag set.
const dawnInstances = new Map<string, Promise<GpuLike>>();

async function nodeGpu(flags: string[]): Promise<GpuLike> {
  const key = flags.join('\n');
  let gpu = dawnInstances.get(key);
  if (!gpu) {
    gpu = (async () => {
      const moduleName = 'webgpu';
      let mod: { create(flags: string[]): GpuLike; globals: Record<string, unknown> };
      try {
        mod = await import(/* @vite-ignore */ moduleName);
      } catch {
        throw new UnsupportedFeatureError(
          "no navigator.gpu and the 'webgpu' package could not be loaded; in Node install it (npm i webgpu)",
          'createContext',
        );
      }
      // Kernels use WebGPU's enum-like globals (GPUBufferUsage, ...) as a browser has them.
      for (const [name, value] of Object.entries(mod.globals)) {
        if (!(name in globalThis)) (globalThis as Record<string, unknown>)[name] = value;
      }
      return mod.create(flags);
    })();
    dawnInstances.set(key, gpu);
    gpu.catch(() => dawnInstances.delete(key));
  }
  return gpu;
}

function browserGpu(): GpuLike | undefined {
  const nav = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator;
  return nav?.gpu;
}

let nextContextId = 1;

/** Whether an adapter renders on the CPU (Mesa llvmpipe/lavapipe, SwiftShader), from its info. */
export function isSoftwareAdapterInfo(a: AdapterSummary): boolean {
  return /llvmpipe|lavapipe|swiftshader/i.test(`${a.vendor} ${a.architecture} ${a.device} ${a.description}`) || a.architecture === 'software';
}

/** A device and what it offers. Create with `createContext()`; release with `dispose()`. */
export class GpuContext {
  readonly id = nextContextId++;
  readonly device: GPUDevice;
  /** Features the device was created with (after `disableFeatures`). */
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  readonly adapterInfo: AdapterSummary;
  /** Smallest and largest subgroup size of the adapter (0 when unknown or no subgroups). */
  readonly subgroupMinSize: number;
  readonly subgroupMaxSize: number;
  /** f16 subgroup-matrix shapes offered (empty unless the feature is on). */
  readonly subgroupMatrixConfigs: readonly SubgroupMatrixConfig[];
  private readonly ownsDevice: boolean;
  // Strong reference to the Dawn instance (see nodeGpu): never dropped while the device lives.
  private readonly gpu: unknown;
  private disposedFlag = false;
  private readonly errors: GPUError[] = [];

  /** @internal use createContext() */
  constructor(init: {
    device: GPUDevice;
    ownsDevice: boolean;
    gpu: unknown;
    adapterInfo: AdapterSummary;
    subgroupMatrixConfigs: SubgroupMatrixConfig[];
    subgroupSizes: [number, number];
    disabled: ReadonlySet<string>;
  }) {
    this.device = init.device;
    this.ownsDevice = init.ownsDevice;
    this.gpu = init.gpu;
    this.adapterInfo = init.adapterInfo;
    this.features = new Set([...init.device.features].filter((f) => !init.disabled.has(f)));
    this.subgroupMatrixConfigs = this.features.has('chromium-experimental-subgroup-matrix')
      ? init.subgroupMatrixConfigs
      : [];
    this.limits = init.device.limits;
    const sg = this.features.has('subgroups') ? init.subgroupSizes : [0, 0];
    this.subgroupMinSize = sg[0];
    this.subgroupMaxSize = sg[1];
    this.device.addEventListener?.('uncapturederror', (event: Event) => {
      const error = (event as GPUUncapturedErrorEvent).error;
      this.errors.push(error);
    });
  }

  get hasF16(): boolean {
    return this.features.has('shader-f16');
  }
  /**
   * The adapter renders on the CPU (Mesa llvmpipe/lavapipe, SwiftShader): kernels there pick
   * smaller unrolls, since their compile time grows with shader size and speed is not the point.
   */
  get isSoftwareAdapter(): boolean {
    return isSoftwareAdapterInfo(this.adapterInfo);
  }

  get hasSubgroups(): boolean {
    return this.features.has('subgroups');
  }
  get hasTimestamps(): boolean {
    return this.features.has('timestamp-query');
  }
  /** Tensor-core MMA with f16 inputs and f32 accumulation, in a shape kernels can use. */
  get hasSubgroupMatrixF16(): boolean {
    return this.subgroupMatrixConfigs.some(
      (c) => c.componentType === 'f16' && (c.resultComponentType === 'f32' || c.resultComponentType === 'f16'),
    );
  }
  get disposed(): boolean {
    return this.disposedFlag;
  }

  /** Throws DisposedError if the context was disposed. */
  assertLive(argument = 'ctx'): void {
    if (this.disposedFlag) throw new DisposedError('the GPU context was disposed', argument);
  }

  /** Uploads host data as a new tensor. A typed array of the dtype's own bits is taken as is. */
  tensor(data: TensorData, shape: readonly number[], dtype: DType, label?: string): Tensor {
    this.assertLive();
    return Tensor.fromHost(this, data, shape, dtype, label);
  }

  /** A new tensor with undefined contents. */
  empty(shape: readonly number[], dtype: DType, label?: string): Tensor {
    this.assertLive();
    return Tensor.empty(this, shape, dtype, label);
  }

  /** A new tensor filled with zeros. */
  zeros(shape: readonly number[], dtype: DType, label?: string): Tensor {
    return this.empty(shape, dtype, label); // WebGPU zero-initialises new buffers
  }

  /** A new tensor with every element set to `value` (NaN to poison an output). */
  full(shape: readonly number[], dtype: DType, value: number, label?: string): Tensor {
    const t = this.empty(shape, dtype, label);
    t.fill(value);
    return t;
  }

  /** Wraps an existing buffer (e.g. an engine's KV cache) without copying. */
  fromBuffer(
    buffer: GPUBuffer,
    shape: readonly number[],
    dtype: DType,
    options: { offset?: number; strides?: readonly number[] } = {},
  ): Tensor {
    this.assertLive();
    return Tensor.fromBuffer(this, buffer, shape, dtype, options);
  }

  /** Submits command buffers to the device queue. */
  submit(commands: GPUCommandBuffer[]): void {
    this.assertLive();
    this.device.queue.submit(commands);
  }

  /** Resolves when all submitted GPU work has finished. */
  async synchronize(): Promise<void> {
    this.assertLive();
    await this.device.queue.onSubmittedWorkDone();
  }

  /**
   * Runs `fn` and rejects with the first WebGPU validation/OOM/internal error it caused, so a
   * test fails on any validation error instead of reading garbage.
   */
  async checkErrors<T>(fn: () => T | Promise<T>): Promise<T> {
    this.assertLive();
    const { device } = this;
    device.pushErrorScope('internal');
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    let result: T | undefined;
    let thrown: unknown;
    try {
      result = await fn();
    } catch (e) {
      thrown = e;
    }
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    const internal = await device.popErrorScope();
    const error = validation ?? oom ?? internal;
    if (error) throw new WebInferError(`WebGPU ${error.constructor.name}: ${error.message}`);
    if (thrown !== undefined) throw thrown;
    return result as T;
  }

  /** Errors raised outside any error scope since the last call (then cleared). */
  takeUncapturedErrors(): GPUError[] {
    return this.errors.splice(0);
  }

  /** Destroys the device (unless it was the caller's) and invalidates every tensor. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    if (this.ownsDevice) this.device.destroy();
    void this.gpu;
  }
}

function summarizeAdapterInfo(info: GPUAdapterInfo | undefined): AdapterSummary {
  return {
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
  };
}

function readSubgroupSizes(info: GPUAdapterInfo | undefined): [number, number] {
  const i = info as { subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  return [Number(i?.subgroupMinSize ?? 0), Number(i?.subgroupMaxSize ?? 0)];
}

function readSubgroupMatrixConfigs(info: GPUAdapterInfo | undefined): SubgroupMatrixConfig[] {
  const configs = (info as { subgroupMatrixConfigs?: Iterable<Record<string, unknown>> } | undefined)
    ?.subgroupMatrixConfigs;
  if (!configs) return [];
  return [...configs].map((c) => ({
    M: Number(c.M),
    N: Number(c.N),
    K: Number(c.K),
    componentType: String(c.componentType),
    resultComponentType: String(c.resultComponentType),
  }));
}

/** Limits raised to the adapter's maximum: large KV caches need big buffers and bindings. */
export type RaisedLimit = (typeof RAISED_LIMITS)[number];
const RAISED_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

/**
 * Creates a context: the device with every helpful feature the adapter offers and its largest
 * buffer/binding/workgroup limits.
 *
 * @example
 * const ctx = await createContext();
 * console.log(ctx.adapterInfo, [...ctx.features]);
 * const t = ctx.tensor([1, 2, 3, 4], [2, 2], 'f16');
 * console.log(await t.toArray()); // Float32Array [1, 2, 3, 4]
 * ctx.dispose();
 */
export async function createContext(options: CreateContextOptions = {}): Promise<GpuContext> {
  const disabled = new Set(options.disableFeatures ?? []);
  if (options.device) {
    const info = (options.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
    return new GpuContext({
      device: options.device,
      ownsDevice: false,
      gpu: undefined,
      adapterInfo: summarizeAdapterInfo(info),
      subgroupMatrixConfigs: readSubgroupMatrixConfigs(info),
      subgroupSizes: readSubgroupSizes(info),
      disabled,
    });
  }

  let gpu: GpuLike | undefined;
  let adapter = options.adapter;
  if (!adapter) {
    gpu = browserGpu() ?? (await nodeGpu(options.dawnFlags ?? DEFAULT_DAWN_FLAGS));
    adapter =
      (await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' })) ??
      undefined;
    if (!adapter) {
      throw new UnsupportedFeatureError(
        'no WebGPU adapter found (on a machine without a GPU, run scripts/install-software-gpu.sh)',
        'createContext',
      );
    }
  }

  const requiredFeatures = new Set<GPUFeatureName>();
  for (const f of HELPFUL_FEATURES) {
    if (adapter.features.has(f) && !disabled.has(f)) requiredFeatures.add(f as GPUFeatureName);
  }
  for (const f of options.requiredFeatures ?? []) {
    if (!adapter.features.has(f)) {
      throw new UnsupportedFeatureError(`the adapter does not offer feature '${f}'`, 'options.requiredFeatures');
    }
    requiredFeatures.add(f);
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof value === 'number') requiredLimits[name] = Math.min(value, options.limits?.[name] ?? value);
  }
  const device = await adapter.requestDevice({
    label: options.label ?? 'webinfer',
    requiredFeatures: [...requiredFeatures],
    requiredLimits,
  });
  const info = (adapter as { info?: GPUAdapterInfo }).info;
  return new GpuContext({
    device,
    ownsDevice: true,
    gpu,
    adapterInfo: summarizeAdapterInfo(info),
    subgroupMatrixConfigs: readSubgroupMatrixConfigs(info),
    subgroupSizes: readSubgroupSizes(info),
    disabled,
  });
}
