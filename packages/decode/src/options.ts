/** Decode's head dims; the shared option parsers live in core-buffers. */
import { UnsupportedFeatureError } from '@webinfer/core-buffers';

export {
  checkHeads,
  parseKVDType,
  parseNonNegative,
  parsePosEncoding,
  parsePositive,
  parseQDType,
  parseScale,
  parseWindowLeft,
} from '@webinfer/core-buffers';

export const SUPPORTED_HEAD_DIMS = [64, 128, 256, 512] as const;

export function checkHeadDim(headDim: number, argument = 'headDim'): void {
  if (!(SUPPORTED_HEAD_DIMS as readonly number[]).includes(headDim)) {
    throw new UnsupportedFeatureError(`head_dim ${headDim} is not supported; use ${SUPPORTED_HEAD_DIMS.join(', ')}`, argument);
  }
}
