/**
 * Registers everything the wasm backend needs to train MobileNetV2 at
 * full speed: the three gradient kernels tfjs-backend-wasm lacks, a faster
 * pointwise `Conv2DBackpropInput`, one-pass relu6/clip gradients, the
 * fused training-mode batch normalisation with its layer routing, and
 * faster `Identity`, `FusedBatchNorm` and `Relu6` kernels.
 *
 * @module
 */
import {
  Conv2DBackpropInput,
  getGradient,
  getKernel,
  type GradConfig,
  type KernelConfig,
  registerGradient,
  registerKernel,
  unregisterGradient,
  unregisterKernel,
} from "@tensorflow/tfjs-core";
import {
  clipGradConfig,
  FUSED_GRADIENT_KERNELS,
  fusedActivationGradient,
} from "./activation_grads.ts";
import {
  BATCH_NORM_TRAIN,
  batchNormTrainConfig,
  batchNormTrainGradConfig,
  batchNormTrainGradConfigEntry,
} from "./batch_norm_training.ts";
import {
  conv2dBackpropFilterConfig,
  conv2dBackpropInputConfig,
} from "./conv2d_backprop.ts";
import {
  depthwiseBackpropFilterConfig,
  depthwiseBackpropInputConfig,
} from "./depthwise_backprop.ts";
import { identityConfig, WRAPPED_FORWARD_KERNELS } from "./forward_kernels.ts";
import { installLayerFusion, uninstallLayerFusion } from "./layer_fusion.ts";

/** Options of {@linkcode registerWasmTrainingKernels}. */
export interface WasmTrainingOptions {
  /**
   * Route tfjs-layers' BatchNormalization and ReLU(6) to fused kernels
   * (see layer_fusion.ts). Off, training still works but each step takes
   * about 6x longer (MobileNetV2, 128 px, batch 8: 4.1 s instead of 0.65 s
   * of CPU time here).
   * @default true
   */
  fuseLayers?: boolean;
}

interface Registration {
  replacedKernels: KernelConfig[];
  replacedGradients: GradConfig[];
  addedKernels: string[];
}

let registration: Registration | undefined;

function replaceKernel(config: KernelConfig, state: Registration): void {
  const existing = getKernel(config.kernelName, "wasm");
  if (existing !== undefined) {
    state.replacedKernels.push(existing);
    unregisterKernel(config.kernelName, "wasm");
  }
  registerKernel(config);
  state.addedKernels.push(config.kernelName);
}

/**
 * Registers the wasm training kernels (idempotent). Call after
 * tfjs-backend-wasm is imported; the layer routing takes effect only
 * while `tf.getBackend() === "wasm"`.
 */
export function registerWasmTrainingKernels(
  options: WasmTrainingOptions = {},
): void {
  const { fuseLayers = true } = options;
  if (registration === undefined) {
    const state: Registration = {
      replacedKernels: [],
      replacedGradients: [],
      addedKernels: [],
    };
    const nativeInput = getKernel(Conv2DBackpropInput, "wasm");
    const kernels: KernelConfig[] = [
      identityConfig,
      conv2dBackpropFilterConfig,
      depthwiseBackpropFilterConfig,
      depthwiseBackpropInputConfig,
      clipGradConfig,
      batchNormTrainConfig,
      batchNormTrainGradConfig,
    ];
    if (nativeInput !== undefined) {
      kernels.push(conv2dBackpropInputConfig(nativeInput));
    }
    for (const [name, wrap] of Object.entries(WRAPPED_FORWARD_KERNELS)) {
      const native = getKernel(name, "wasm");
      if (native !== undefined) kernels.push(wrap(native));
    }
    for (const config of kernels) replaceKernel(config, state);

    for (const kernelName of FUSED_GRADIENT_KERNELS) {
      const original = getGradient(kernelName);
      if (original === undefined) continue;
      state.replacedGradients.push(original);
      registerGradient(fusedActivationGradient(original));
    }
    registerGradient(batchNormTrainGradConfigEntry);
    registration = state;
  }
  if (fuseLayers) installLayerFusion();
  else uninstallLayerFusion();
}

/**
 * Undoes {@linkcode registerWasmTrainingKernels}: restores the wasm
 * backend's own kernels, tfjs-core's gradients and tfjs-layers' methods.
 * For tests that compare against the unmodified backend.
 */
export function unregisterWasmTrainingKernels(): void {
  uninstallLayerFusion();
  if (registration === undefined) return;
  for (const name of registration.addedKernels) {
    unregisterKernel(name, "wasm");
  }
  for (const config of registration.replacedKernels) registerKernel(config);
  for (const config of registration.replacedGradients) {
    registerGradient(config);
  }
  unregisterGradient(BATCH_NORM_TRAIN);
  registration = undefined;
}
