/**
 * dptrain's wire format: msgpack messages with one schema per kind, float32
 * streams chunked below the bus's `max_payload`, strict validation, and
 * counted rejections. See docs/wire.md.
 *
 * @module
 */

export { WIRE_ERROR_REASONS, WireError } from "./errors.ts";
export type {
  WireErrorContext,
  WireErrorOptions,
  WireErrorReason,
} from "./errors.ts";

export { crc32 } from "./crc32.ts";

export {
  CONTROL_COMMANDS,
  decodeMessage,
  encodeMessage,
  MAX_LISTED_CHUNKS,
  MESSAGE_KINDS,
  PS_RANK,
  RUN_ID_PATTERN,
  TENSOR_STREAMS,
  WIRE_LIMITS,
  WIRE_VERSION,
  WORKER_STATES,
} from "./messages.ts";
export type {
  ControlCommand,
  ControlMessage,
  DecodeExpectations,
  HelloMessage,
  MessageBase,
  MessageKind,
  MessageOfKind,
  OutgoingMessage,
  ResendMessage,
  StepWindow,
  TensorChunkInit,
  TensorChunkMessage,
  TensorStream,
  WelcomeMessage,
  WireMessage,
  WorkerState,
} from "./messages.ts";

export {
  META_LIMITS,
  metaNumber,
  metaNumberArray,
  metaString,
  validateMeta,
} from "./meta.ts";
export type {
  MetaNumberOptions,
  MetaSource,
  WireMeta,
  WireMetaValue,
} from "./meta.ts";

export {
  chunkFloat32,
  encodeTensorStream,
  StreamAssembler,
} from "./chunking.ts";
export type {
  AssembledStream,
  ChunkOptions,
  Float32Chunk,
  StreamAssemblerOptions,
  StreamKey,
  TensorStreamOptions,
} from "./chunking.ts";

export { RejectionCounter } from "./rejections.ts";
export type {
  RejectionCounterOptions,
  RejectionEvent,
  RejectionSource,
} from "./rejections.ts";
