/**
 * Typed errors. Every message names the argument at fault and what was expected, and every
 * check runs on the CPU before any GPU work is enqueued.
 */

/** Base class of every error webinfer throws on purpose. */
export class WebInferError extends Error {
  /** The argument (or option) at fault, e.g. `"q"`, `"indptr"`, `"options.windowLeft"`. */
  readonly argument: string | undefined;

  constructor(message: string, argument?: string) {
    super(argument ? `${argument}: ${message}` : message);
    this.name = new.target.name;
    this.argument = argument;
  }
}

/** A tensor has the wrong rank or extent. */
export class ShapeError extends WebInferError {}

/** A tensor has a dtype the call does not accept. */
export class DTypeError extends WebInferError {}

/** A layout (`kvLayout`, strides, paged-KV form) is not one the call accepts. */
export class LayoutError extends WebInferError {}

/** An index (page id, indptr entry, position) is outside its valid range or out of order. */
export class IndexRangeError extends WebInferError {}

/** A scalar option has an invalid value (negative window, non-finite scale, ...). */
export class ValueError extends WebInferError {}

/** The device lacks a feature or limit the call needs. */
export class UnsupportedFeatureError extends WebInferError {}

/** `run()` was called with inputs that disagree with the last `plan()`, or before any plan. */
export class PlanMismatchError extends WebInferError {}

/** A GPU resource was used after `destroy()`/`dispose()`. */
export class DisposedError extends WebInferError {}
