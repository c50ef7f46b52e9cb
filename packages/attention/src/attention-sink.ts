/**
 * BatchAttentionWithAttentionSinkWrapper: the paged prefill wrapper with per-head attention sinks
 * (gpt-oss). Each head's sink is one extra natural-log logit in the softmax denominator, with no
 * value vector and no sm_scale; the LSE includes it. Causal, window and RoPE apply; soft cap and
 * ALiBi do not (as FlashInfer's AttentionSink variant).
 */
import { type GpuContext, type KVLayout, type PagedKVCacheInput, PlanMismatchError, type PosEncodingMode, type Tensor, UnsupportedFeatureError } from '@webinfer/core-buffers';
import { type BatchPrefillPagedPlanArgs, BatchPrefillWithPagedKVCacheWrapper, type PrefillRunOptions } from '@webinfer/prefill';

export interface AttentionSinkWrapperOptions {
  kvLayout?: KVLayout;
  posEncodingMode?: PosEncodingMode;
  /** Default bf16, as FlashInfer. */
  qDataType?: string;
  /** Default qDataType. */
  kvDataType?: string;
  /** Default 128. */
  headDimQk?: number;
  /** Default 128. */
  headDimVo?: number;
  /** Default -1 (no window). */
  windowLeft?: number;
}

type Baked = Required<Omit<AttentionSinkWrapperOptions, 'kvLayout'>>;

/**
 * @example
 * const w = new BatchAttentionWithAttentionSinkWrapper(ctx, ctx.empty([128 << 20], 'u8'), { qDataType: 'f16', windowLeft: 127 });
 * w.plan({ qoIndptr, pagedKvIndptr, pagedKvIndices, pagedKvLastPageLen, numQoHeads: 64, numKvHeads: 8,
 *   headDimQk: 128, pageSize: 16, causal: true });
 * const o = w.run(q, kvCache, sinks);          // sinks: f32 [64]
 */
export class BatchAttentionWithAttentionSinkWrapper {
  /** Values baked into the kernel at construction (FlashInfer's JIT arguments); plan must agree. */
  readonly baked: Baked;
  private readonly inner: BatchPrefillWithPagedKVCacheWrapper;

  constructor(ctx: GpuContext, workspaceBuffer: Tensor | GPUBuffer, options: AttentionSinkWrapperOptions = {}) {
    this.inner = new BatchPrefillWithPagedKVCacheWrapper(ctx, workspaceBuffer, { kvLayout: options.kvLayout });
    const qDataType = options.qDataType ?? 'bf16';
    this.baked = {
      posEncodingMode: options.posEncodingMode ?? 'NONE',
      qDataType,
      kvDataType: options.kvDataType ?? qDataType,
      headDimQk: options.headDimQk ?? 128,
      headDimVo: options.headDimVo ?? options.headDimQk ?? 128,
      windowLeft: options.windowLeft ?? -1,
    };
    if (this.baked.posEncodingMode === 'ALIBI') throw new UnsupportedFeatureError('the sink variant does not apply ALiBi', 'posEncodingMode');
  }

  /** The paged prefill plan; the constructor's values fill what is left out and must match what is given. */
  plan(args: BatchPrefillPagedPlanArgs): void {
    const b = this.baked;
    const given: [keyof Baked, unknown][] = [
      ['posEncodingMode', args.posEncodingMode],
      ['qDataType', args.qDataType],
      ['kvDataType', args.kvDataType],
      ['headDimQk', args.headDimQk],
      ['headDimVo', args.headDimVo],
      ['windowLeft', args.windowLeft],
    ];
    for (const [name, value] of given) {
      if (value !== undefined && value !== b[name]) throw new PlanMismatchError(`${String(value)} differs from the constructor's ${String(b[name])}`, name);
    }
    if (args.logitsSoftCap) throw new UnsupportedFeatureError('the sink variant does not apply a soft cap', 'logitsSoftCap');
    this.inner.plan({ ...args, ...b });
  }

  /** Attention with `sinks` (f32 `[Hq]`, natural log); `smScale` replaces the planned sm_scale when given. Returns o. */
  run(q: Tensor, pagedKvCache: PagedKVCacheInput, sinks: Tensor, smScale?: number, options: Omit<PrefillRunOptions, 'sinks' | 'smScale'> = {}): Tensor {
    return this.inner.run(q, pagedKvCache, { ...options, sinks: checkSinks(sinks), smScale, returnLse: false });
  }

  /** `run` that also returns the LSE (base 2, including the sink). */
  runReturnLse(q: Tensor, pagedKvCache: PagedKVCacheInput, sinks: Tensor, smScale?: number, options: Omit<PrefillRunOptions, 'sinks' | 'smScale'> = {}): [Tensor, Tensor] {
    return this.inner.run(q, pagedKvCache, { ...options, sinks: checkSinks(sinks), smScale, returnLse: true });
  }

  get planInfo() {
    return this.inner.planInfo;
  }

  destroy(): void {
    this.inner.destroy();
  }
}

function checkSinks(sinks: Tensor | undefined): Tensor {
  if (!sinks) throw new UnsupportedFeatureError('run needs the sinks tensor: run(q, pagedKvCache, sinks, smScale?)', 'sinks');
  return sinks;
}
