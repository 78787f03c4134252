// penny-train's public API.
export { createModel, createModelFromGraph, PennyModel, DEFAULT_OPTIMIZER, type CreateModelOptions, type GraphModelOptions, type ModelState } from './model/model.js';
export { BACKBONES, backboneNames, buildBackbone, type BackboneName } from './model/backbones.js';
export { GraphBuilder, type Graph, type GraphNode, type ParamSpec } from './model/graph.js';
export type { OpName } from './model/ops.js';
export { loadPretrained } from './model/weights.js';
export { nativeInfo, setNumThreads, readTorchFile, libtorchBuild } from './backend/native.js';
export type { AdamState, Floats, OptimizerOptions, StepResult } from './backend/types.js';
// export: ONNX fp32 / INT8 / IMX500 (src/export/)
export * from './export/index.js';
export { exportCheckpoint, train, type EpochReport, type ExportOptions, type Metrics, type TrainOptions, type TrainResult } from './train/train.js';
export { loadConfig, MODEL_KEYS, type ModelKey, type TrainingConfig } from './config/config.js';
// prediction: trained models to answers (src/predict/)
export { loadModel, type LoadedModel, type Classification, type ClassifyOptions, type Scored } from './predict/model.js';
export { readCoin, readCoins, loadModels, type CoinModels, type CoinReading, type ReadOptions, type RoiReading } from './predict/read-coin.js';
export { preprocess, displayedSize, type ImageInput, type NamedImage, type RoiPlacement } from './predict/preprocess.js';
export { findCoin, placeRoi, roiTemplate, iou, type Coin, type RoiTemplate } from './predict/locate.js';
export { preprocessRecipe, type PreprocessRecipe } from './data/images.js';
export { UsageError, ConfigError, DataError, InterruptedError } from './errors.js';
