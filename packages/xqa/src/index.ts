/**
 * @webinfer/xqa — XQA decode (`xqa`) on WebGPU: GQA decode over paged K/V with the page table
 * and lengths on the GPU.
 */
export { xqa, type XqaOptions } from './xqa';
