/** @webinfer/decode — in progress. */
export const IMPLEMENTED = false;
