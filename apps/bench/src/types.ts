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
