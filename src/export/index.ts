// ONNX export: fp32 from the graph IR, the IMX500 pass, INT8 post-training quantization, parity in onnxruntime.
export {
  emitOnnx, inferShapes, modelToOnnx, pennyMetadata, writeOnnxAtomic, BATCH_DIM, INPUT_NAME, ONNX_IR_VERSION, ONNX_OPSET,
  OUTPUT_NAME, PRODUCER, type EmitOptions, type PennyMetadata,
} from './onnx.js';
export {
  decodeModel, encodeModel, metadataOf, onnxProtoPath, opHistogram, readModel, withMetadata,
  type GraphProto, type ModelProto, type NodeProto, type TensorProto,
} from './onnx-proto.js';
export { imx500Report, makeImx500Compatible, peakActivationBytes, IMX500_MEMORY_BYTES, IMX500_OPS, type Imx500Options, type Imx500Report } from './imx500.js';
export {
  quantizeInt8, quantizeWeightInt8, uint8Params, type CalibrationBatch, type CalibrationMethod, type Int8Options, type Int8Result,
  type Int8Stats, type QuantizeMode,
} from './int8.js';
export {
  createSession, onnxParity, onnxruntimeOpTypes, runOnnx, top1Agreement, type OnnxSource, type ParityResult, type SessionOptions,
} from './parity.js';
export { exportModels, PARITY_LIMIT, type ExportContext, type ExportResult } from './deploy.js';
