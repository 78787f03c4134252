// The pure-JS tensor backend.
export { JsBackend, type JsBackendOptions } from './backend.js';
export { gemm, mat, type MatView } from './matmul.js';
