/**
 * The wire schemas: one msgpack map per message kind, each carrying the
 * schema version `v`, its `kind`, the `run` id and the `step`. Decoding
 * validates every field and never lets anything but a `WireError` escape.
 *
 * @module
 */

import { Packr, Unpackr } from "msgpackr";
import { crc32 } from "./crc32.ts";
import { describeValue, FieldReader, isPlainRecord } from "./_fields.ts";
import {
  firstNonFinite,
  float32ToLittleEndianBytes,
  littleEndianBytesToFloat32,
} from "./_float32_bytes.ts";
import { WireError } from "./errors.ts";
import { validateMeta, type WireMeta } from "./meta.ts";

/** The schema version every message carries as `v`. */
export const WIRE_VERSION = 1;

/** Every message kind. */
export const MESSAGE_KINDS = [
  "hello",
  "welcome",
  "tensor_chunk",
  "control",
  "resend",
] as const;

/** One of {@linkcode MESSAGE_KINDS}. */
export type MessageKind = typeof MESSAGE_KINDS[number];

/** The float32 streams: weights from the PS, gradients from a worker. */
export const TENSOR_STREAMS = ["weights", "grads"] as const;

/** One of {@linkcode TENSOR_STREAMS}. */
export type TensorStream = typeof TENSOR_STREAMS[number];

/** Commands a `control` message carries. */
export const CONTROL_COMMANDS = ["stop", "abort"] as const;

/** One of {@linkcode CONTROL_COMMANDS}. */
export type ControlCommand = typeof CONTROL_COMMANDS[number];

/**
 * Where a worker stands, as its heartbeat (`hello`) reports it:
 * `joining` before its first welcome, `waiting` for the weights of `step`
 * (none or part of them in), `computing` step `step`, `answered` step
 * `step` (its gradients are published).
 */
export const WORKER_STATES = [
  "joining",
  "waiting",
  "computing",
  "answered",
] as const;

/** One of {@linkcode WORKER_STATES}. */
export type WorkerState = typeof WORKER_STATES[number];

/** The most chunk indices one `hello` or `resend` lists. */
export const MAX_LISTED_CHUNKS = 256;

/** The rank the parameter server uses as a sender. */
export const PS_RANK: -1 = -1;

/** Limits the decoder enforces; each is part of the wire contract. */
export const WIRE_LIMITS = {
  /** The largest message decoded at all: NATS's own hard maximum. */
  maxMessageBytes: 64 * 1024 * 1024,
  /** The most chunks in one stream. */
  maxChunks: 1 << 24,
  /** The longest stream, in float32 values (4 GiB). */
  maxStreamFloats: 2 ** 30,
  /** The longest `run` id (also a NATS subject token). */
  maxRunChars: 64,
  /** The longest free-text field (`reason`). */
  maxReasonChars: 4_096,
  /** The longest short string (`backend`, `device`, `host`). */
  maxNameChars: 256,
} as const;

/** Run ids are one NATS subject token: letters, digits, `_` and `-`. */
export const RUN_ID_PATTERN = /^[A-Za-z0-9_-]+$/;

const FINGERPRINT_PATTERN = /^[0-9a-f]{8,128}$/;

/** The fields every message kind carries (besides `v` and `kind`). */
export interface MessageBase {
  /** The run id; messages of another run are rejected (`wrong_run`). */
  run: string;
  /** The step (weights version) the message belongs to. */
  step: number;
}

/**
 * Worker to parameter server, on join and then every heartbeat interval:
 * who the worker is, the fingerprint of its model and data config (which
 * must match the PS's), and where it stands, so that the PS can tell a
 * dead worker from a busy one and re-send what a live one lacks. `step` is
 * the weights version the worker is at.
 */
export interface HelloMessage extends MessageBase {
  /** The message kind. */
  kind: "hello";
  /** The worker's rank, in `[0, workers)`. */
  rank: number;
  /** Lowercase hex of the config fingerprint (8 to 128 digits). */
  fingerprint: string;
  /** The tfjs backend the worker runs (`cpu`, `wasm`, ...). */
  backend: string;
  /** The accelerator the backend reports, or nil. */
  device: string | null;
  /** The worker's process id. */
  pid: number;
  /** The worker's host name. */
  host: string;
  /** Where the worker stands at `step`. */
  state: WorkerState;
  /** The attempt of step `step` the state refers to. */
  attempt: number;
  /**
   * While `waiting` with part of the weights in: up to
   * {@linkcode MAX_LISTED_CHUNKS} missing chunk indices; empty otherwise.
   */
  missing: number[];
  /** How long the worker's last step took to compute, in seconds. */
  stepSeconds: number;
}

/**
 * Parameter server to one worker: re-publish chunks of your gradient
 * stream for `step` (attempt `attempt`), because they never arrived.
 */
export interface ResendMessage extends MessageBase {
  /** The message kind. */
  kind: "resend";
  /** The worker asked. */
  rank: number;
  /** The attempt of the step whose stream is incomplete. */
  attempt: number;
  /** The chunk indices to re-publish; empty for the whole stream. */
  chunks: number[];
}

/** Parameter server to one worker: joined, or refused and why. */
export interface WelcomeMessage extends MessageBase {
  /** The message kind. */
  kind: "welcome";
  /** The rank being answered. */
  rank: number;
  /** Whether the worker may take part. */
  accepted: boolean;
  /**
   * Why the worker was refused, such as a fingerprint mismatch naming the
   * expected and received values; empty when accepted, required otherwise.
   */
  reason: string;
  /** The step the worker starts at. */
  startStep: number;
  /**
   * The PS process's id, new at every start: a worker welcomed again by
   * another session knows the PS restarted; by the same one, that an
   * earlier welcome crossed a repeated `hello`.
   */
  session: string;
}

/**
 * One chunk of a float32 stream. Chunk `index` of `count` covers floats
 * `[offset, offset + payload.length)` of a stream of `total` floats, split
 * uniformly: every chunk but the last holds the same number of floats.
 */
export interface TensorChunkMessage extends MessageBase {
  /** The message kind. */
  kind: "tensor_chunk";
  /** Which stream: `weights` (from the PS) or `grads` (from a worker). */
  stream: TensorStream;
  /** The sender: `PS_RANK` (-1) for weights, the worker rank for grads. */
  rank: number;
  /**
   * Which plan of step `step` the stream belongs to: 0, then 1, 2, ...
   * when the PS re-plans a step after ranks dropped out of it. Chunks of
   * two attempts never mix in one stream.
   */
  attempt: number;
  /** This chunk's position in the stream, in `[0, count)`. */
  index: number;
  /** How many chunks the stream has (at least 1). */
  count: number;
  /** Where this chunk starts in the stream, in floats. */
  offset: number;
  /** The whole stream's length, in floats. */
  total: number;
  /** CRC-32 of the payload's little-endian bytes. */
  crc32: number;
  /** The chunk's values: a fresh, aligned array after decoding. */
  payload: Float32Array;
  /** The stream's metadata: present on chunk 0 only (`{}` at least). */
  meta?: WireMeta;
}

/** Parameter server to everyone: stop cleanly, or abort. */
export interface ControlMessage extends MessageBase {
  /** The message kind. */
  kind: "control";
  /** `stop` ends the run after the current step; `abort` ends it now. */
  command: ControlCommand;
  /** Why, for the logs. */
  reason: string;
}

/** Any decoded message. */
export type WireMessage =
  | HelloMessage
  | WelcomeMessage
  | TensorChunkMessage
  | ControlMessage
  | ResendMessage;

/** The message type of one kind. */
export type MessageOfKind<K extends MessageKind> = Extract<
  WireMessage,
  { kind: K }
>;

/**
 * A chunk to encode: the checksum is computed by the encoder. `meta`
 * defaults to `{}` on chunk 0 and must be absent on the others.
 */
export type TensorChunkInit =
  & Omit<TensorChunkMessage, "crc32" | "attempt">
  & {
    /** @default 0 */
    attempt?: number;
  };

/** Any message to encode. */
export type OutgoingMessage =
  | HelloMessage
  | WelcomeMessage
  | TensorChunkInit
  | ControlMessage
  | ResendMessage;

/** An inclusive range of steps. */
export interface StepWindow {
  /** The smallest step accepted. */
  min: number;
  /** The largest step accepted. */
  max: number;
}

/** What the receiver expects; anything else is rejected. */
export interface DecodeExpectations<K extends MessageKind = MessageKind> {
  /** The run id every message must carry. */
  run: string;
  /** The number of workers: ranks must be in `[0, workers)`. */
  workers: number;
  /** The kinds accepted on this subject; others are `wrong_kind`. */
  kinds?: readonly K[];
  /** The steps accepted; others are `wrong_step`. @default any step */
  steps?: StepWindow;
  /**
   * Larger messages are `oversized` without being parsed.
   * @default WIRE_LIMITS.maxMessageBytes
   */
  maxMessageBytes?: number;
}

// Plain msgpack maps, no msgpackr records: any msgpack decoder can read
// the wire, and no structure table is shared between processes.
const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
});

const COMMON_FIELDS = ["v", "kind", "run", "step"] as const;

// Field order on the wire; `payload` last so a header reads as a prefix.
const FIELDS: Record<MessageKind, readonly string[]> = {
  hello: [
    "rank",
    "fingerprint",
    "backend",
    "device",
    "pid",
    "host",
    "state",
    "attempt",
    "missing",
    "stepSeconds",
  ],
  welcome: ["rank", "accepted", "reason", "startStep", "session"],
  tensor_chunk: [
    "stream",
    "rank",
    "attempt",
    "index",
    "count",
    "offset",
    "total",
    "crc32",
    "meta",
    "payload",
  ],
  control: ["command", "reason"],
  resend: ["rank", "attempt", "chunks"],
};

const ALLOWED_FIELDS: Record<MessageKind, ReadonlySet<string>> = {
  hello: allowedFields("hello"),
  welcome: allowedFields("welcome"),
  tensor_chunk: allowedFields("tensor_chunk"),
  control: allowedFields("control"),
  resend: allowedFields("resend"),
};

function allowedFields(kind: MessageKind): ReadonlySet<string> {
  return new Set([...COMMON_FIELDS, ...FIELDS[kind]]);
}

/** A validated tensor chunk whose payload is still raw bytes. */
interface ChunkHeader extends Omit<TensorChunkMessage, "payload"> {
  payloadBytes: Uint8Array;
}

type ParsedMessage =
  | HelloMessage
  | WelcomeMessage
  | ControlMessage
  | ResendMessage
  | ChunkHeader;

/**
 * Encodes one message as a msgpack map, after checking it against the same
 * schema the decoder enforces: nothing is sent that a receiver would drop.
 *
 * The result may be a view into a buffer the encoder shares with earlier
 * results; it is never overwritten, but copy it before mutating.
 *
 * @throws {WireError} With the reason the decoder would give (a NaN
 *   gradient is `non_finite`, a bad rank `bad_rank`, ...).
 *
 * @example Round trip
 * ```ts
 * import { decodeMessage, encodeMessage } from "./messages.ts";
 *
 * const bytes = encodeMessage({
 *   kind: "control", run: "r1", step: 4, command: "stop", reason: "done",
 * });
 * const message = decodeMessage(bytes, { run: "r1", workers: 2 });
 * console.assert(message.kind === "control");
 * ```
 */
export function encodeMessage(message: OutgoingMessage): Uint8Array {
  const wire: Record<string, unknown> = {
    v: WIRE_VERSION,
    kind: message.kind,
    run: message.run,
    step: message.step,
  };

  if (message.kind === "tensor_chunk") {
    const payloadBytes = float32ToLittleEndianBytes(message.payload);
    Object.assign(wire, message, {
      attempt: message.attempt ?? 0,
      crc32: crc32(payloadBytes),
      meta: message.index === 0 ? message.meta ?? {} : message.meta,
      payload: payloadBytes,
    });
  } else {
    Object.assign(wire, message);
  }

  const ordered = orderFields(wire, message.kind);
  const reader = new FieldReader(ordered, "encode");
  readMessage(reader, { run: message.run, workers: Number.MAX_SAFE_INTEGER });

  if (message.kind === "tensor_chunk") {
    checkFinitePayload(message.payload, { reader, offset: message.offset });
  }
  return packr.pack(ordered);
}

/**
 * Decodes and validates one message: every field's type and range, the
 * kind, version, run, step window, rank, chunk geometry, checksum and
 * finiteness. A tensor chunk's payload is copied into a fresh, aligned
 * `Float32Array`, whatever the offset of `bytes` in its buffer.
 *
 * @param bytes The message as received (a view at any offset).
 * @param expect What this receiver accepts.
 * @returns The message, typed by the kinds in `expect.kinds`.
 * @throws {WireError} For any invalid input, garbage included.
 * @throws {RangeError} Only for invalid `expect` (a caller's bug).
 */
export function decodeMessage<K extends MessageKind = MessageKind>(
  bytes: Uint8Array,
  expect: DecodeExpectations<K>,
): MessageOfKind<K> {
  const { maxMessageBytes = WIRE_LIMITS.maxMessageBytes } = expect;

  checkExpectations(expect);
  if (bytes.length > maxMessageBytes) {
    throw new WireError({
      reason: "oversized",
      message: `Cannot decode message: ${bytes.length} bytes is above ` +
        `the limit of ${maxMessageBytes}`,
    });
  }
  const record = unpackRecord(bytes);
  const reader = new FieldReader(record, "decode");
  const parsed = readMessage(reader, expect);

  if (!("payloadBytes" in parsed)) return parsed as MessageOfKind<K>;
  const { payloadBytes, ...header } = parsed;
  const actualCrc = crc32(payloadBytes);

  if (actualCrc !== header.crc32) {
    reader.fail("bad_checksum", {
      field: "crc32",
      detail: `is ${hex32(header.crc32)} but the payload's is ` +
        hex32(actualCrc),
    });
  }
  const payload = littleEndianBytesToFloat32(payloadBytes);
  checkFinitePayload(payload, { reader, offset: header.offset });
  return { ...header, payload } as MessageOfKind<K>;
}

function checkExpectations(expect: DecodeExpectations): void {
  const { run, workers, steps } = expect;

  if (!Number.isSafeInteger(workers) || workers < 1) {
    throw new RangeError(
      "Cannot decode message: expect.workers must be a positive integer, " +
        `received ${workers}`,
    );
  }
  if (!RUN_ID_PATTERN.test(run) || run.length > WIRE_LIMITS.maxRunChars) {
    throw new RangeError(
      `Cannot decode message: expect.run must be a run id, received ` +
        JSON.stringify(run),
    );
  }
  if (steps !== undefined && !(steps.min <= steps.max)) {
    throw new RangeError(
      "Cannot decode message: expect.steps must have min <= max, received " +
        `[${steps.min}, ${steps.max}]`,
    );
  }
}

function unpackRecord(bytes: Uint8Array): Record<string, unknown> {
  let value: unknown;

  try {
    value = unpackr.unpack(bytes);
  } catch (error) {
    throw new WireError({
      reason: isTruncation(error) ? "truncated" : "garbage",
      message: `Cannot decode message: ${bytes.length} bytes are not one ` +
        `msgpack value (${errorText(error)})`,
      cause: error,
    });
  }
  if (!isPlainRecord(value)) {
    throw new WireError({
      reason: "garbage",
      message: "Cannot decode message: the msgpack value is not a map",
    });
  }
  return value;
}

function isTruncation(error: unknown): boolean {
  return typeof error === "object" && error !== null &&
    (error as { incomplete?: unknown }).incomplete === true;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function readMessage(
  reader: FieldReader,
  expect: DecodeExpectations,
): ParsedMessage {
  reader.peekContext();

  if (reader.raw("v") !== WIRE_VERSION) {
    reader.fail("bad_version", {
      field: "v",
      detail: `must be ${WIRE_VERSION}, received ` +
        describeValue(reader.raw("v")),
    });
  }
  const kind = readKind(reader, expect);
  reader.rejectUnknown(ALLOWED_FIELDS[kind]);
  const base = readRunAndStep(reader, expect);

  switch (kind) {
    case "hello":
      return readHello(reader, { base, workers: expect.workers });
    case "welcome":
      return readWelcome(reader, { base, workers: expect.workers });
    case "tensor_chunk":
      return readChunkHeader(reader, { base, workers: expect.workers });
    case "control":
      return readControl(reader, base);
    case "resend":
      return readResend(reader, { base, workers: expect.workers });
  }
}

function readKind(
  reader: FieldReader,
  expect: DecodeExpectations,
): MessageKind {
  const value = reader.raw("kind");
  const kind = MESSAGE_KINDS.find((candidate) => candidate === value);

  if (kind === undefined) {
    reader.fail("unknown_kind", {
      field: "kind",
      detail: `must be one of ${MESSAGE_KINDS.join(", ")}, received ` +
        describeValue(value),
    });
  }
  reader.context.kind = kind;

  if (expect.kinds !== undefined && !expect.kinds.includes(kind)) {
    reader.fail("wrong_kind", {
      field: "kind",
      detail: `must be one of ${expect.kinds.join(", ")} here`,
    });
  }
  return kind;
}

function readRunAndStep(
  reader: FieldReader,
  expect: DecodeExpectations,
): MessageBase {
  const run = reader.string("run", {
    minChars: 1,
    maxChars: WIRE_LIMITS.maxRunChars,
    pattern: RUN_ID_PATTERN,
  });
  reader.context.run = run;

  if (run !== expect.run) {
    reader.fail("wrong_run", {
      field: "run",
      detail: `must be ${JSON.stringify(expect.run)}`,
    });
  }
  const step = reader.integer("step", {
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
  });
  reader.context.step = step;

  const window = expect.steps;
  if (window !== undefined && (step < window.min || step > window.max)) {
    reader.fail("wrong_step", {
      field: "step",
      detail: `must be in [${window.min}, ${window.max}]`,
    });
  }
  return { run, step };
}

/** The common fields already read, and the rank bound. */
interface KindRead {
  base: MessageBase;
  workers: number;
}

function readWorkerRank(reader: FieldReader, workers: number): number {
  const rank = reader.integer("rank", {
    min: 0,
    max: workers - 1,
    rangeReason: "bad_rank",
  });
  reader.context.rank = rank;
  return rank;
}

function readHello(reader: FieldReader, read: KindRead): HelloMessage {
  const { maxNameChars } = WIRE_LIMITS;

  return {
    kind: "hello",
    ...read.base,
    rank: readWorkerRank(reader, read.workers),
    fingerprint: reader.string("fingerprint", {
      maxChars: 128,
      pattern: FINGERPRINT_PATTERN,
    }),
    backend: reader.string("backend", { minChars: 1, maxChars: maxNameChars }),
    device: reader.nullableString("device", { maxChars: maxNameChars }),
    pid: reader.integer("pid", { min: 0, max: 2 ** 32 - 1 }),
    host: reader.string("host", { minChars: 1, maxChars: maxNameChars }),
    state: reader.oneOf("state", WORKER_STATES),
    attempt: reader.integer("attempt", { min: 0, max: MAX_ATTEMPT }),
    missing: reader.integerArray("missing", {
      min: 0,
      max: WIRE_LIMITS.maxChunks - 1,
      maxItems: MAX_LISTED_CHUNKS,
    }),
    stepSeconds: reader.number("stepSeconds", { min: 0, max: 1e7 }),
  };
}

// Attempts are re-plans of one step after ranks dropped out; a run that
// needs more than this has no live workers left.
const MAX_ATTEMPT = 1 << 20;

function readResend(reader: FieldReader, read: KindRead): ResendMessage {
  return {
    kind: "resend",
    ...read.base,
    rank: readWorkerRank(reader, read.workers),
    attempt: reader.integer("attempt", { min: 0, max: MAX_ATTEMPT }),
    chunks: reader.integerArray("chunks", {
      min: 0,
      max: WIRE_LIMITS.maxChunks - 1,
      maxItems: MAX_LISTED_CHUNKS,
    }),
  };
}

function readWelcome(reader: FieldReader, read: KindRead): WelcomeMessage {
  const rank = readWorkerRank(reader, read.workers);
  const accepted = reader.boolean("accepted");
  const reason = reader.string("reason", {
    minChars: accepted ? 0 : 1,
    maxChars: WIRE_LIMITS.maxReasonChars,
  });

  return {
    kind: "welcome",
    ...read.base,
    rank,
    accepted,
    reason,
    startStep: reader.integer("startStep", {
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
    }),
    session: reader.string("session", {
      minChars: 1,
      maxChars: WIRE_LIMITS.maxRunChars,
      pattern: RUN_ID_PATTERN,
    }),
  };
}

function readControl(
  reader: FieldReader,
  base: MessageBase,
): ControlMessage {
  return {
    kind: "control",
    ...base,
    command: reader.oneOf("command", CONTROL_COMMANDS),
    reason: reader.string("reason", {
      maxChars: WIRE_LIMITS.maxReasonChars,
    }),
  };
}

function readChunkHeader(reader: FieldReader, read: KindRead): ChunkHeader {
  const stream = reader.oneOf("stream", TENSOR_STREAMS);
  const rank = stream === "weights"
    ? reader.integer("rank", {
      min: PS_RANK,
      max: PS_RANK,
      rangeReason: "bad_rank",
    })
    : readWorkerRank(reader, read.workers);
  reader.context.rank = rank;
  const attempt = reader.integer("attempt", { min: 0, max: MAX_ATTEMPT });

  const count = reader.integer("count", {
    min: 1,
    max: WIRE_LIMITS.maxChunks,
  });
  const index = reader.integer("index", { min: 0, max: count - 1 });
  const total = reader.integer("total", {
    min: 0,
    max: WIRE_LIMITS.maxStreamFloats,
  });
  const offset = reader.integer("offset", { min: 0, max: total });
  const crc = reader.integer("crc32", { min: 0, max: 2 ** 32 - 1 });
  const payloadBytes = reader.bytes("payload");

  if (payloadBytes.length % 4 !== 0) {
    reader.fail("wrong_length", {
      field: "payload",
      detail: `must hold whole float32 values, received ` +
        `${payloadBytes.length} bytes`,
    });
  }
  checkGeometry(reader, {
    index,
    count,
    offset,
    total,
    floats: payloadBytes.length / 4,
  });

  const header: ChunkHeader = {
    kind: "tensor_chunk",
    ...read.base,
    stream,
    rank,
    attempt,
    index,
    count,
    offset,
    total,
    crc32: crc,
    payloadBytes,
  };
  if (index === 0) {
    header.meta = validateMeta(reader.raw("meta"), {
      action: "decode",
      ...reader.context,
    });
  } else if (reader.has("meta")) {
    reader.fail("bad_field", {
      field: "meta",
      detail: `is only carried by chunk 0, not chunk ${index}`,
    });
  }
  return header;
}

/** The geometry of one chunk, as read from its header. */
interface ChunkGeometry {
  index: number;
  count: number;
  offset: number;
  total: number;
  floats: number;
}

/**
 * Checks that the chunk is one piece of a uniform split of `total` floats:
 * chunk `i` covers `[i*C, min((i+1)*C, total))` for one chunk size `C`.
 * With that rule each chunk alone determines `C`, so a receiver can detect
 * overlapping or missing ranges from any arrival order (see `chunkFloatsOf`).
 */
function checkGeometry(reader: FieldReader, chunk: ChunkGeometry): void {
  const { index, count, offset, total, floats } = chunk;
  const end = offset + floats;

  if (end > total) {
    reader.fail("wrong_length", {
      field: "payload",
      detail: `covers floats [${offset}, ${end}), past the stream's ` +
        `total of ${total}`,
    });
  }
  if (!isUniformPiece(chunk)) {
    reader.fail("bad_field", {
      field: "offset",
      detail: `chunk ${index} of ${count} covering [${offset}, ${end}) is ` +
        `not a uniform split of ${total} floats`,
    });
  }
}

function isUniformPiece(chunk: ChunkGeometry): boolean {
  const { index, count, offset, total, floats } = chunk;

  if (count === 1) return offset === 0 && floats === total;
  if (index < count - 1) {
    return floats > 0 && offset === index * floats &&
      count === Math.ceil(total / floats);
  }
  const chunkFloats = offset / index;
  return Number.isInteger(chunkFloats) && floats > 0 &&
    floats <= chunkFloats && offset + floats === total;
}

/**
 * The uniform chunk size `C` a valid chunk implies (its own length for all
 * but the last chunk; `offset / index` for the last).
 */
export function chunkFloatsOf(chunk: TensorChunkMessage): number {
  if (chunk.count === 1) return chunk.total;
  if (chunk.index < chunk.count - 1) return chunk.payload.length;
  return chunk.offset / chunk.index;
}

function checkFinitePayload(
  payload: Float32Array,
  options: { reader: FieldReader; offset: number },
): void {
  const bad = firstNonFinite(payload);

  if (bad >= 0) {
    options.reader.fail("non_finite", {
      field: "payload",
      detail: `holds ${payload[bad]} at float ${options.offset + bad} ` +
        "of the stream",
    });
  }
}

function orderFields(
  wire: Record<string, unknown>,
  kind: MessageKind,
): Record<string, unknown> {
  const ordered: Record<string, unknown> = {};

  for (const field of [...COMMON_FIELDS, ...FIELDS[kind]]) {
    if (wire[field] !== undefined) ordered[field] = wire[field];
  }
  for (const field of Object.keys(wire)) {
    if (!(field in ordered) && wire[field] !== undefined) {
      ordered[field] = wire[field];
    }
  }
  return ordered;
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}
