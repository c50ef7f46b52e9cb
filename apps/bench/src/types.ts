export interface SuiteOptions {
  quick: boolean;
  verify: boolean;
  progress: (msg: string) => void;
  /** Only cases whose name contains this. */
  filter?: string;
}

export interface CaseResult {
  suite: string;
  name: string;
  /** Median GPU time of one run. */
  timeMs: number;
  p10Ms: number;
  p90Ms: number;
  /** Effective bandwidth: bytes of Q, KV actually needed and O, over the median time. */
  gbs: number;
  tflops: number;
  bytes: number;
  flops: number;
  /** CPU time of plan() and of encoding run() (median), microseconds; NaN when not measured. */
  planCpuUs: number;
  runCpuUs: number;
  timing: 'timestamp' | 'queue';
  /** undefined without --verify. */
  verified?: string;
  /** The attention shape, for peers that time the same case. */
  shape?: {
    batch: number;
    kvLen: number;
    numQoHeads: number;
    numKvHeads: number;
    headDim: number;
    kvDtype: string;
    /** Query rows per request (prefill; 1 when absent) and whether they are causal (bottom-right). */
    qoLen?: number;
    causal?: boolean;
  };
}

/**
 * Time-based warm-up of every timed case (ms of back-to-back runs before sampling). A `--verify`
 * of the case before idles the GPU for seconds of CPU reference work and its clocks drop; 300 ms
 * did not bring them back for short kernels (decode single kv 32768 read 0.39 instead of 0.19 ms,
 * BENCHMARKS.md "Session 6"; the MLA default read 0.98 instead of 0.80 ms in that full suite).
 */
export const WARMUP_MS = 1000;
