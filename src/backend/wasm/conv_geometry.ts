/**
 * Convolution geometry shared by the wasm gradient kernels: tfjs's own
 * `computeConv2DInfo`, reduced to the numbers the SIMD loops take, plus
 * the checks for layouts those loops do not cover.
 *
 * @module
 */
import type { backend_util } from "@tensorflow/tfjs-core";

/** Raised for a convolution configuration a wasm kernel does not cover. */
export class UnsupportedConvError extends Error {
  /** The kernel that was asked. */
  readonly kernel: string;

  constructor(kernel: string, reason: string) {
    super(`Cannot run ${kernel} on wasm: ${reason}`);
    this.name = "UnsupportedConvError";
    this.kernel = kernel;
  }
}

/** The integer arguments of the SIMD convolution loops, in their order. */
export interface ConvGeometry {
  batch: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outChannels: number;
  outHeight: number;
  outWidth: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  padTop: number;
  padLeft: number;
}

/** Geometry from tfjs's conv info (padding, rounding and dilation applied). */
export function convGeometry(info: backend_util.Conv2DInfo): ConvGeometry {
  return {
    batch: info.batchSize,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    outChannels: info.outChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    dilationHeight: info.dilationHeight,
    dilationWidth: info.dilationWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/** Loop bounds from the output size down to the taps, as the .wat takes. */
export function loopArgs(g: ConvGeometry): number[] {
  return [
    g.outHeight,
    g.outWidth,
    g.filterHeight,
    g.filterWidth,
    g.strideHeight,
    g.strideWidth,
    g.dilationHeight,
    g.dilationWidth,
    g.padTop,
    g.padLeft,
  ];
}

/** Throws unless the data format is channels-last (the only one covered). */
export function requireChannelsLast(
  kernel: string,
  dataFormat: string | undefined,
): void {
  if (dataFormat !== undefined && dataFormat !== "NHWC") {
    throw new UnsupportedConvError(
      kernel,
      `data format '${dataFormat}' is not supported, only NHWC`,
    );
  }
}
