/**
 * @webinfer/xqa — XQA decode on WebGPU with the page table and lengths on the GPU: `xqa` (GQA
 * decode) and `xqaMla` (DeepSeek MLA decode, 128 heads over 576-wide latent rows).
 */
export { xqa, type XqaOptions } from './xqa';
export { xqaMla, type XqaMlaOptions } from './xqa-mla';
