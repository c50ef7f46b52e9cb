/**
 * @webinfer/xqa — not implemented yet. Will export: xqa, xqaMla.
 * See README.md for the plan; kernels land here, on top of @webinfer/core-buffers.
 */
export const IMPLEMENTED = false;
