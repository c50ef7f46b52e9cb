import { describe, expect, it } from 'vitest';
import { parseSlowdownCounters, slowdownLine } from '../src/slowdown';

// The shape of `nvidia-smi -q -d PERFORMANCE` (driver 580) on a host with two GPUs.
const sample = (thermal: number, power: number) => `
==============NVSMI LOG==============

Attached GPUs                             : 2
GPU 00000000:18:00.0
    Performance
        Clocks Event Reasons
            Idle                          : Active
            SW Thermal Slowdown           : Not Active
        Clocks Event Reasons Counters
            SW Power Capping              : ${power} us
            Sync Boost                    : 7 us
            SW Thermal Slowdown           : ${thermal} us
            HW Slowdown                   : 0 us
        Sparse Operation Mode             : N/A

GPU 00000000:2A:00.0
    Performance
        Clocks Event Reasons Counters
            SW Power Capping              : 5 us
            SW Thermal Slowdown           : 1000000 us
`;

describe('GPU slowdown counters', () => {
  it('sums each reason over the GPUs and stops at the end of each section', () => {
    expect(parseSlowdownCounters(sample(29_351_014, 45))).toEqual({
      'SW Power Capping': 50,
      'Sync Boost': 7,
      'SW Thermal Slowdown': 30_351_014,
      'HW Slowdown': 0,
    });
    expect(parseSlowdownCounters('No devices were found')).toBeUndefined();
  });

  it('names the reasons that grew during the run', () => {
    const before = parseSlowdownCounters(sample(1_000_000, 0));
    expect(slowdownLine(before, parseSlowdownCounters(sample(1_000_000, 0)))).toBe('GPU slowdown during the run (nvidia-smi): none');
    expect(slowdownLine(before, parseSlowdownCounters(sample(30_000_000, 2_500_000)))).toBe(
      'GPU slowdown during the run (nvidia-smi): SW Power Capping 2.5 s, SW Thermal Slowdown 29.0 s; times may read slow',
    );
    expect(slowdownLine(undefined, undefined)).toBe('GPU slowdown during the run: not known (no nvidia-smi)');
  });
});
