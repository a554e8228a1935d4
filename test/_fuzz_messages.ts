/**
 * Test helper for the runtime fuzz test: a seeded generator of malformed
 * wire messages, each built from a valid message of one kind (hello,
 * welcome, tensor_chunk, control, resend) and broken in one way, and the
 * verdict its receiver must give it.
 *
 * Verdicts follow the receivers' order of checks: the codec's
 * (`decodeMessage`, fuzzed on its own in wire_fuzz_test.ts), then the
 * runtime's (src/ps/collector.ts and membership.ts for the parameter
 * server, src/worker/worker.ts for a worker). A verdict is one of:
 *
 * - a `WireErrorReason`: the receiver drops the message and counts it;
 * - `ignored`: dropped uncounted by design, for three kinds of message
 *   only: a chunk of an older step (a late re-send of finished work), an
 *   exact repeat of a chunk already received (a retransmission), and a
 *   welcome of the PS session the worker joined (an answer to a repeated
 *   `hello`);
 * - `accepted`: the receiver would take it in or act on it (a complete
 *   chunk, a `stop`, a welcome): never sent, because from a client that
 *   may publish on the run's subjects such a message is legitimate as
 *   far as the wire can tell. Keeping rogue clients off those subjects is
 *   NATS authorization's job (docs/security.md);
 * - `uncounted`: dropped without being counted although no design rule
 *   sanctions it (see the fuzz test's module doc); never sent either, so
 *   that the test's accounting stays exact.
 *
 * Messages not sent are tallied in {@linkcode FuzzGenerator.withheld}.
 *
 * @module
 */
import { Packr } from "msgpackr";
import { chunkFloatsOf } from "../src/wire/messages.ts";
import {
  crc32,
  type DecodeExpectations,
  decodeMessage,
  type MessageKind,
  type MessageOfKind,
  type TensorChunkMessage,
  WIRE_LIMITS,
  WireError,
  type WireErrorReason,
} from "../src/wire/mod.ts";
import type { RunSubjects } from "../src/transport/mod.ts";

/** What a receiver does with a message. See the module doc. */
export type Verdict = WireErrorReason | "ignored" | "accepted" | "uncounted";

/** The verdicts of messages the generator sends. */
export type SentVerdict = WireErrorReason | "ignored";

/** Gives a message's verdict at one receiver, in one state. */
export type VerdictFn = (subject: string, bytes: Uint8Array) => Verdict;

/** One way of breaking a message; the fuzz test reports counts by it. */
export const FUZZ_CATEGORIES = [
  "random_bytes",
  "map_random_bytes",
  "truncated",
  "prefix_garbage",
  "trailing_bytes",
  "byte_flip",
  "huge_declared_length",
  "msgpack_oddity",
  "wrong_type",
  "missing_field",
  "unknown_field",
  "negative_number",
  "huge_number",
  "non_finite",
  "another_run",
  "bad_run_token",
  "bad_version",
  "unknown_kind",
  "wrong_kind",
  "oversized",
  "future_step",
  "old_step",
  "other_attempt",
  "wrong_subject_rank",
  "bad_checksum",
  "bad_geometry",
  "misplaced_meta",
  "wrong_stream",
  "wrong_total",
  "out_of_order_stream",
  "old_step_replay",
  "replay_wrong_subject",
  "identical_duplicate",
  "conflicting_duplicate",
  "split_conflict",
] as const;

/** One of {@linkcode FUZZ_CATEGORIES}. */
export type FuzzCategory = typeof FUZZ_CATEGORIES[number];

/**
 * The verdicts a category may give once sent; a category not listed may
 * give any. A sent message outside its list is a generator bug: the
 * generator throws.
 */
const CATEGORY_VERDICTS: Partial<Record<FuzzCategory, SentVerdict[]>> = {
  truncated: ["truncated"],
  trailing_bytes: ["garbage"],
  huge_declared_length: ["truncated"],
  another_run: ["wrong_run"],
  bad_version: ["bad_version"],
  unknown_kind: ["unknown_kind"],
  wrong_kind: ["wrong_kind"],
  oversized: ["oversized"],
  non_finite: ["non_finite"],
  bad_checksum: ["bad_checksum"],
  wrong_stream: ["bad_field"],
  wrong_total: ["wrong_length"],
  out_of_order_stream: ["wrong_length"],
  future_step: ["wrong_step"],
  old_step: ["ignored"],
  wrong_subject_rank: ["bad_rank"],
  old_step_replay: ["ignored"],
  replay_wrong_subject: ["bad_rank"],
  identical_duplicate: ["ignored"],
  conflicting_duplicate: ["conflicting_duplicate"],
  split_conflict: ["conflicting_duplicate"],
};

/** One generated message, with the verdict its receiver must give. */
export interface FuzzMessage {
  subject: string;
  bytes: Uint8Array;
  category: FuzzCategory;
  verdict: SentVerdict;
}

/** The run the messages are aimed at. */
export interface FuzzEnv {
  runId: string;
  workers: number;
  /** Floats in a weights or gradient stream (the variable layout). */
  streamLength: number;
  subjects: RunSubjects;
}

/** What a chunk is compared on when its index arrives twice. */
interface ChunkSignature {
  crc32: number;
  floats: number;
  meta: string;
}

/** A stream a receiver holds in part: what later chunks must agree with. */
export interface PartialStream {
  /** The sender rank (`-1` for weights). */
  rank: number;
  count: number;
  chunkFloats: number;
  received: Map<number, ChunkSignature>;
}

/** Builds the partial stream a receiver holds after `chunks` (one stream). */
export function partialStreamOf(chunks: TensorChunkMessage[]): PartialStream {
  const [first] = chunks;
  if (first === undefined) throw new RangeError("no chunks received yet");
  return {
    rank: first.rank,
    count: first.count,
    chunkFloats: chunkFloatsOf(first),
    received: new Map(chunks.map((c) => [c.index, signatureOf(c)])),
  };
}

function signatureOf(chunk: TensorChunkMessage): ChunkSignature {
  return {
    crc32: chunk.crc32,
    floats: chunk.payload.length,
    meta: JSON.stringify(chunk.meta ?? null),
  };
}

/** The parameter server while it collects one attempt of one step. */
export interface PsState {
  step: number;
  attempt: number;
  /** Its connection's `maxPayloadBytes`: larger grads are `oversized`. */
  maxMessageBytes: number;
  /** A gradient stream it holds in part, if any. */
  partial?: PartialStream;
}

/** A worker assembling the weights of `version`. */
export interface WorkerState {
  version: { step: number; attempt: number };
  /** The step and attempt it last answered. */
  last: { step: number; attempt: number } | null;
  /** The weights stream of `version` it holds in part, if any. */
  partial?: PartialStream;
  /** The PS session that welcomed it, when known. */
  session?: string;
}

type SubjectKind =
  | "hello"
  | "grads"
  | "weights"
  | "control"
  | "welcome"
  | "resend";

function subjectKind(env: FuzzEnv, subject: string): SubjectKind {
  const base = env.subjects.weights.slice(0, -".weights".length);
  const token = subject.slice(base.length + 1).split(".")[0];
  const kinds: SubjectKind[] = [
    "hello",
    "grads",
    "weights",
    "control",
    "welcome",
    "resend",
  ];
  const kind = kinds.find((k) => k === token);
  if (!subject.startsWith(`${base}.`) || kind === undefined) {
    throw new RangeError(`not a subject of run ${env.runId}: ${subject}`);
  }
  return kind;
}

/** Decodes, or returns the reason; any other error is a codec crash. */
function decodeOrReason<K extends MessageKind>(
  bytes: Uint8Array,
  expect: DecodeExpectations<K>,
): MessageOfKind<K> | WireErrorReason {
  try {
    return decodeMessage(bytes, expect);
  } catch (error) {
    if (error instanceof WireError) return error.reason;
    throw new Error(
      `decodeMessage threw a non-WireError for ${bytes.length} bytes ` +
        `[${[...bytes.subarray(0, 24)].join(",")}]`,
      { cause: error },
    );
  }
}

function compareVersion(
  a: { step: number; attempt: number },
  b: { step: number; attempt: number },
): number {
  return a.step !== b.step ? a.step - b.step : a.attempt - b.attempt;
}

/** The assembler's checks on a chunk of the stream it collects. */
function streamVerdict(
  chunk: TensorChunkMessage,
  partial: PartialStream | undefined,
  streamLength: number,
): Verdict {
  if (chunk.total !== streamLength) return "wrong_length";
  if (partial === undefined) return "accepted";
  if (
    chunk.count !== partial.count ||
    chunkFloatsOf(chunk) !== partial.chunkFloats
  ) {
    return "conflicting_duplicate";
  }
  const earlier = partial.received.get(chunk.index);
  if (earlier === undefined) return "accepted";
  const now = signatureOf(chunk);
  const identical = now.crc32 === earlier.crc32 &&
    now.floats === earlier.floats && now.meta === earlier.meta;
  return identical ? "ignored" : "conflicting_duplicate";
}

/**
 * The parameter server's verdicts on `hello.<r>` and `grads.<r>`
 * (membership.ts `#onHello`, collector.ts `#onChunk` and `#add`).
 */
export function psVerdicts(env: FuzzEnv, state: PsState): VerdictFn {
  const { runId: run, workers } = env;

  return (subject, bytes) => {
    const subjectRank = env.subjects.rankOf(subject);
    const kind = subjectKind(env, subject);

    if (kind === "hello") {
      const hello = decodeOrReason(bytes, { run, workers, kinds: ["hello"] });
      if (typeof hello === "string") return hello;
      // A well-formed hello joins, refuses or updates a member.
      return hello.rank === subjectRank ? "accepted" : "bad_rank";
    }
    if (kind !== "grads") throw new RangeError(`PS gets no ${subject}`);

    const chunk = decodeOrReason(bytes, {
      run,
      workers,
      kinds: ["tensor_chunk"],
      steps: { min: 0, max: state.step },
      maxMessageBytes: state.maxMessageBytes,
    });
    if (typeof chunk === "string") return chunk;
    if (chunk.stream !== "grads") return "bad_field";
    if (chunk.rank !== subjectRank) return "bad_rank";
    if (chunk.step < state.step) return "ignored";
    // Another attempt's chunk: dropped uncounted, even a future attempt.
    if (chunk.attempt !== state.attempt) return "uncounted";
    const partial = state.partial?.rank === chunk.rank
      ? state.partial
      : undefined;
    return streamVerdict(chunk, partial, env.streamLength);
  };
}

/**
 * A worker's verdicts on `weights`, `control`, `welcome.<r>` and
 * `resend.<r>` (worker.ts `onWeights`, `onControl`, `onWelcome`,
 * `onResend`).
 */
export function workerVerdicts(env: FuzzEnv, state: WorkerState): VerdictFn {
  const { runId: run, workers } = env;

  return (subject, bytes) => {
    const subjectRank = env.subjects.rankOf(subject);

    switch (subjectKind(env, subject)) {
      case "weights": {
        const chunk = decodeOrReason(bytes, {
          run,
          workers,
          kinds: ["tensor_chunk"],
        });
        if (typeof chunk === "string") return chunk;
        if (chunk.stream !== "weights") return "bad_field";
        const order = compareVersion(chunk, state.version);
        if (order < 0) return "ignored";
        if (state.last && compareVersion(chunk, state.last) <= 0) {
          return "ignored";
        }
        // A newer version starts a new stream (see the fuzz test's notes).
        if (order > 0) return "accepted";
        return streamVerdict(chunk, state.partial, env.streamLength);
      }
      case "control": {
        const control = decodeOrReason(bytes, {
          run,
          workers,
          kinds: ["control"],
        });
        return typeof control === "string" ? control : "accepted";
      }
      case "welcome": {
        const welcome = decodeOrReason(bytes, {
          run,
          workers,
          kinds: ["welcome"],
        });
        if (typeof welcome === "string") return welcome;
        if (welcome.rank !== subjectRank) return "bad_rank";
        // A refusal ends the worker; a welcome from another PS session
        // restarts its step; one from this session repeats the first.
        if (!welcome.accepted) return "accepted";
        return welcome.session === state.session ? "ignored" : "accepted";
      }
      case "resend": {
        const resend = decodeOrReason(bytes, {
          run,
          workers,
          kinds: ["resend"],
        });
        if (typeof resend === "string") return resend;
        if (resend.rank !== subjectRank) return "bad_rank";
        if (state.last === null) return "uncounted";
        // The last answer is re-sent; an older step's request is late.
        const order = compareVersion(resend, state.last);
        if (order === 0) return "accepted";
        return order < 0 ? "ignored" : "uncounted";
      }
      default:
        throw new RangeError(`a worker gets no ${subject}`);
    }
  };
}

// mulberry32: a tiny seeded generator, so a failure replays exactly.
class FuzzRandom {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in `[0, n)`. */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

type WireRecord = Record<string, unknown>;

// Plain msgpack maps packed here, not by the wire encoder, which refuses
// to produce any of these messages.
const packr = new Packr({ useRecords: false, variableMapSize: true });

/** Packs into a fresh array of its own (packr's may share a buffer). */
function pack(value: unknown): Uint8Array {
  return Uint8Array.from(packr.pack(value));
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function floatBytes(values: Float32Array): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((value, i) => view.setFloat32(i * 4, value, true));
  return bytes;
}

/** A tensor chunk's fields; `crc32` is computed unless given. */
interface ChunkSpec {
  run: string;
  step: number;
  stream: "weights" | "grads";
  rank: number;
  attempt: number;
  index: number;
  count: number;
  offset: number;
  total: number;
  values: Float32Array;
  meta?: WireRecord;
}

function chunkRecord(spec: ChunkSpec): WireRecord {
  const { values, meta, ...header } = spec;
  const payload = floatBytes(values);
  return {
    v: 1,
    kind: "tensor_chunk",
    run: header.run,
    step: header.step,
    stream: header.stream,
    rank: header.rank,
    attempt: header.attempt,
    index: header.index,
    count: header.count,
    offset: header.offset,
    total: header.total,
    crc32: crc32(payload),
    ...(meta === undefined ? {} : { meta }),
    payload,
  };
}

/** The templates messages are built from: valid ones of each kind. */
type TemplateKind = SubjectKind;

const GRADS_META = { count: 2, lossSum: 1.5, correct: 1, nonFinite: "" };
const WEIGHTS_META = {
  epoch: 0,
  lr: 1e-4,
  scaling: "minus_one_to_one",
  indices: [[0, 1], [2, 3]],
};

const WRONG_TYPES: readonly unknown[] = [
  null,
  true,
  false,
  "x",
  "",
  "1",
  1.5,
  -0.25,
  [],
  [1, "a"],
  {},
  { k: 1 },
  new Uint8Array(3),
  2n ** 63n,
];
const NEGATIVES = [-1, -2, -7, -(2 ** 31), -(2 ** 53 - 1), -0.5, -1e300];
const HUGES = [
  2 ** 24 + 1,
  2 ** 31,
  2 ** 32,
  2 ** 32 + 1,
  2 ** 53 - 1,
  2 ** 53 + 2,
  1e300,
  Number.MAX_VALUE,
];
const NON_FINITE = [NaN, Infinity, -Infinity];

/** Integer and number fields per template kind (`v` apart). */
const NUMBER_FIELDS: Record<TemplateKind, readonly string[]> = {
  hello: ["step", "rank", "pid", "attempt", "stepSeconds"],
  welcome: ["step", "rank", "startStep"],
  control: ["step"],
  resend: ["step", "rank", "attempt"],
  grads: [
    "step",
    "rank",
    "attempt",
    "index",
    "count",
    "offset",
    "total",
    "crc32",
  ],
  weights: [
    "step",
    "rank",
    "attempt",
    "index",
    "count",
    "offset",
    "total",
    "crc32",
  ],
};

const ARRAY_FIELDS: Partial<Record<TemplateKind, string>> = {
  hello: "missing",
  resend: "chunks",
};

/** Where the bulk of the messages go: `count` to `subject`. */
export interface BulkTarget {
  subject: string;
  count: number;
  /** The kind of valid message the subject carries, to break. */
  template: TemplateKind;
  /** The rank the template claims (the subject's, for most). */
  rank: number;
  /** The receiver's verdicts. */
  verdictOf: VerdictFn;
}

/** One message as captured from the run's real traffic. */
export interface CapturedMessage {
  subject: string;
  bytes: Uint8Array;
}

type Operator = (template: TemplateKind, rank: number) => Uint8Array[];

/** See the module doc. */
export class FuzzGenerator {
  readonly #env: FuzzEnv;
  readonly #random: FuzzRandom;
  readonly #operators: Record<FuzzCategory, Operator | null>;
  /**
   * Messages generated but not sent, as `"<category> <verdict>"` (the
   * verdict is `accepted` or `uncounted`), with their counts.
   */
  readonly withheld = new Map<string, number>();

  constructor(env: FuzzEnv, seed: number) {
    this.#env = env;
    this.#random = new FuzzRandom(seed);
    this.#operators = this.#makeOperators();
  }

  /**
   * `target.count` messages for each target, of every bulk category that
   * applies to its template, shuffled together.
   */
  bulk(targets: readonly BulkTarget[]): FuzzMessage[] {
    const out: FuzzMessage[] = [];

    for (const target of targets) {
      const categories = FUZZ_CATEGORIES.filter((c) =>
        this.#operators[c] !== null && this.#applies(c, target.template)
      );
      // On a subject of no rank or another rank, a well-formed message of
      // any category is `bad_rank`.
      const subjectRank = this.#env.subjects.rankOf(target.subject);
      const foreign = target.template !== "weights" &&
        target.template !== "control" && subjectRank !== target.rank;
      let sent = 0;
      for (let tries = 0; sent < target.count; tries++) {
        if (tries > 50 * target.count) {
          throw new Error(`cannot fill ${target.subject}: too many withheld`);
        }
        const category = this.#random.pick(categories);
        const operator = this.#operators[category]!;
        for (const bytes of operator(target.template, target.rank)) {
          const message = this.#judge({
            subject: target.subject,
            bytes,
            category,
            verdictOf: target.verdictOf,
            alsoAllowed: foreign ? "bad_rank" : undefined,
          });
          if (message) {
            out.push(message);
            sent++;
          }
        }
      }
    }
    return this.#random.shuffle(out);
  }

  /**
   * Replays of messages captured from older steps, verbatim: each twice,
   * shuffled (`old_step_replay`), and, given `wrongSubject`, once more on
   * a subject of another rank (`replay_wrong_subject`).
   */
  replays(
    captured: readonly CapturedMessage[],
    options: {
      verdictOf: VerdictFn;
      wrongSubject?: (subject: string) => string;
    },
  ): FuzzMessage[] {
    const { verdictOf, wrongSubject } = options;
    const out: FuzzMessage[] = [];

    for (const { subject, bytes } of [...captured, ...captured]) {
      const message = this.#judge({
        subject,
        bytes,
        category: "old_step_replay",
        verdictOf,
      });
      if (message) out.push(message);
    }
    for (const { subject, bytes } of wrongSubject ? captured : []) {
      const message = this.#judge({
        subject: wrongSubject!(subject),
        bytes,
        category: "replay_wrong_subject",
        verdictOf,
      });
      if (message) out.push(message);
    }
    return this.#random.shuffle(out);
  }

  /**
   * Chunks that collide with a stream the receiver holds in part (`real`:
   * the chunks it received, in order): exact repeats in reverse order
   * (`identical_duplicate`), the same indices with another payload or
   * meta (`conflicting_duplicate`), and chunks of another split of the
   * stream, the missing index included (`split_conflict`).
   */
  streamConflicts(
    real: readonly CapturedMessage[],
    options: { verdictOf: VerdictFn; copies: number },
  ): FuzzMessage[] {
    const { verdictOf, copies } = options;
    const { runId, workers } = this.#env;
    const chunks = real.map((m) =>
      decodeMessage(m.bytes, { run: runId, workers, kinds: ["tensor_chunk"] })
    );
    const first = chunks.find((c) => c.index === 0);
    if (first === undefined) throw new RangeError("chunk 0 was not received");
    const subject = real[0].subject;
    const out: FuzzMessage[] = [];
    const add = (category: FuzzCategory, bytes: Uint8Array) => {
      const message = this.#judge({ subject, bytes, category, verdictOf });
      if (message) out.push(message);
    };

    for (let copy = 0; copy < copies; copy++) {
      for (const m of [...real].reverse()) add("identical_duplicate", m.bytes);
      for (const chunk of chunks) {
        add("conflicting_duplicate", this.#conflictingPayload(chunk));
        if (chunk.index === 0) {
          add("conflicting_duplicate", this.#conflictingMeta(chunk));
        }
      }
      for (const bytes of this.#otherSplits(first)) {
        add("split_conflict", bytes);
      }
    }
    return out;
  }

  /** Shuffles `items` in place with the generator's seeded draws. */
  shuffle<T>(items: T[]): T[] {
    return this.#random.shuffle(items);
  }

  /**
   * One message a byte above the decoder's 64 MiB limit
   * (`WIRE_LIMITS.maxMessageBytes`), which a receiver must drop unparsed.
   */
  hugeMessage(subject: string, verdictOf: VerdictFn): FuzzMessage {
    const bytes = new Uint8Array(WIRE_LIMITS.maxMessageBytes + 1);
    bytes[0] = 0x8e;
    const message = this.#judge({
      subject,
      bytes,
      category: "oversized",
      verdictOf,
    });
    if (!message) throw new Error("the huge message was not refused");
    return message;
  }

  #judge(args: {
    subject: string;
    bytes: Uint8Array;
    category: FuzzCategory;
    verdictOf: VerdictFn;
    /** A verdict allowed besides the category's own. */
    alsoAllowed?: SentVerdict;
  }): FuzzMessage | undefined {
    const { subject, bytes, category, alsoAllowed } = args;
    const verdict = args.verdictOf(subject, bytes);

    if (verdict === "accepted" || verdict === "uncounted") {
      const key = `${category} ${verdict}`;
      this.withheld.set(key, (this.withheld.get(key) ?? 0) + 1);
      return undefined;
    }
    const allowed = CATEGORY_VERDICTS[category];
    if (
      allowed !== undefined && !allowed.includes(verdict) &&
      verdict !== alsoAllowed
    ) {
      throw new Error(
        `generator bug: a ${category} message on ${subject} gets ` +
          `${verdict}, expected ${allowed.join(" or ")}`,
      );
    }
    return { subject, bytes, category, verdict };
  }

  #applies(category: FuzzCategory, template: TemplateKind): boolean {
    const chunk = template === "grads" || template === "weights";
    switch (category) {
      case "bad_checksum":
      case "bad_geometry":
      case "misplaced_meta":
      case "wrong_stream":
      case "wrong_total":
      case "out_of_order_stream":
        return chunk;
      case "wrong_subject_rank":
        return template !== "weights" && template !== "control";
      default:
        return true;
    }
  }

  // ---- templates ----

  #template(kind: TemplateKind, rank: number): WireRecord {
    const run = this.#env.runId;
    const r = this.#random;

    switch (kind) {
      case "hello":
        return {
          v: 1,
          kind: "hello",
          run,
          step: 1,
          rank,
          fingerprint: "0123456789abcdef",
          backend: "cpu",
          device: null,
          pid: 4242,
          host: "fuzz-host",
          state: "waiting",
          attempt: 0,
          missing: [1, 2],
          stepSeconds: 0.25,
        };
      case "welcome":
        return {
          v: 1,
          kind: "welcome",
          run,
          step: 1,
          rank,
          accepted: true,
          reason: "",
          startStep: 1,
          session: "f0f0f0f0f0f0f0f0",
        };
      case "control":
        return {
          v: 1,
          kind: "control",
          run,
          step: 1,
          command: r.pick(["stop", "abort"]),
          reason: "fuzz",
        };
      case "resend":
        return {
          v: 1,
          kind: "resend",
          run,
          step: 1,
          rank,
          attempt: 0,
          chunks: [0, 1],
        };
      case "grads":
      case "weights":
        return r.next() < 0.5
          ? this.#streamPiece(kind, rank)
          : this.#smallStreamChunk(kind, rank, r.int(3));
    }
  }

  /** A chunk of a layout-sized stream split into chunks of 8 floats. */
  #streamPiece(kind: "grads" | "weights", rank: number): WireRecord {
    const total = this.#env.streamLength;
    const chunkFloats = 8;
    const count = Math.ceil(total / chunkFloats);
    const index = this.#random.pick([0, 0, count - 1, this.#random.int(count)]);
    return this.#chunk(kind, rank, { index, count, chunkFloats, total });
  }

  /** Chunk `index` of a 24-float stream split into 3 (the wrong size). */
  #smallStreamChunk(
    kind: "grads" | "weights",
    rank: number,
    index: number,
  ): WireRecord {
    return this.#chunk(kind, rank, {
      index,
      count: 3,
      chunkFloats: 8,
      total: 24,
    });
  }

  #chunk(
    kind: "grads" | "weights",
    rank: number,
    split: { index: number; count: number; chunkFloats: number; total: number },
  ): WireRecord {
    const { index, count, chunkFloats, total } = split;
    const offset = index * chunkFloats;
    const floats = Math.min(chunkFloats, total - offset);
    const values = Float32Array.from(
      { length: floats },
      () => this.#random.next() - 0.5,
    );
    return chunkRecord({
      run: this.#env.runId,
      step: 1,
      stream: kind,
      rank: kind === "weights" ? -1 : rank,
      attempt: 0,
      index,
      count,
      offset,
      total,
      values,
      ...(index === 0
        ? { meta: kind === "weights" ? WEIGHTS_META : GRADS_META }
        : {}),
    });
  }

  #otherKindRecord(kind: TemplateKind, rank: number): WireRecord {
    const others = (
      ["hello", "welcome", "control", "resend", "grads"] as const
    ).filter((k) =>
      k !== kind && !(kind === "weights" && k === "grads") &&
      !(kind === "grads" && k === "grads")
    );
    return this.#template(this.#random.pick(others), rank);
  }

  // ---- operators: each returns the bytes of one or more messages ----

  #makeOperators(): Record<FuzzCategory, Operator | null> {
    const r = this.#random;
    const encoded = (t: TemplateKind, rank: number) =>
      pack(this.#template(t, rank));
    const edit =
      (change: (record: WireRecord, t: TemplateKind) => void) =>
      (t: TemplateKind, rank: number) => {
        const record = this.#template(t, rank);
        change(record, t);
        return [pack(record)];
      };

    return {
      random_bytes: () => [r.bytes(r.int(257))],
      map_random_bytes: () => {
        const bytes = r.bytes(1 + r.int(256));
        bytes[0] = r.pick([0x80 | r.int(16), 0xde, 0xdf]);
        return [bytes];
      },
      truncated: (t, rank) => {
        const bytes = encoded(t, rank);
        return [bytes.slice(0, r.int(bytes.length))];
      },
      prefix_garbage: (t, rank) => {
        const bytes = encoded(t, rank);
        const cut = bytes.slice(0, r.int(bytes.length));
        return [concat(cut, r.bytes(1 + r.int(32)))];
      },
      trailing_bytes: (t, rank) => [
        concat(encoded(t, rank), r.bytes(1 + r.int(8))),
      ],
      byte_flip: (t, rank) => {
        const bytes = encoded(t, rank);
        for (let flips = 1 + r.int(3); flips > 0; flips--) {
          bytes[r.int(bytes.length)] ^= 1 + r.int(255);
        }
        return [bytes];
      },
      huge_declared_length: (t, rank) => [this.#hugeDeclaredLength(t, rank)],
      msgpack_oddity: (t, rank) => [this.#oddity(t, rank)],
      wrong_type: edit((record) => {
        record[r.pick(Object.keys(record))] = r.pick(WRONG_TYPES);
      }),
      missing_field: edit((record) => {
        delete record[r.pick(Object.keys(record))];
      }),
      unknown_field: edit((record) => {
        record[r.pick(["extra", "Run", "payload2", "ranks", ""])] = r.pick(
          WRONG_TYPES,
        );
      }),
      negative_number: edit((record, t) => {
        this.#setNumber(record, t, r.pick(NEGATIVES));
      }),
      huge_number: edit((record, t) => {
        this.#setNumber(record, t, r.pick(HUGES));
      }),
      non_finite: (t, rank) => [this.#nonFinite(t, rank)],
      another_run: edit((record) => {
        record.run = r.pick(["other-run", `${this.#env.runId}-2`, "r1"]);
      }),
      bad_run_token: edit((record) => {
        record.run = r.pick(["a.b", "*", ">", "", "x".repeat(65), "rün", 7]);
      }),
      bad_version: edit((record) => {
        if (r.next() < 0.2) delete record.v;
        else record.v = r.pick([0, 2, "1", null, 1.5, -1]);
      }),
      unknown_kind: edit((record) => {
        record.kind = r.pick(["gradient", "", "HELLO", "tensor-chunk", 3]);
      }),
      wrong_kind: (t, rank) => [pack(this.#otherKindRecord(t, rank))],
      oversized: (t, rank) => [this.#oversized(t, rank)],
      future_step: edit((record) => {
        record.step = r.pick([2, 3, 17, 2 ** 40, Number.MAX_SAFE_INTEGER]);
      }),
      old_step: edit((record) => {
        record.step = 0;
      }),
      other_attempt: edit((record, t) => {
        if (t === "control" || t === "welcome") record.step = 1 + r.int(3);
        else record.attempt = 1 + r.int(3);
      }),
      wrong_subject_rank: edit((record) => {
        record.rank = 1 - (record.rank as number);
      }),
      bad_checksum: edit((record) => {
        const payload = record.payload as Uint8Array;
        if (payload.length > 0 && r.next() < 0.5) {
          payload[r.int(payload.length)] ^= 1 << r.int(8);
        } else {
          record.crc32 = ((record.crc32 as number) ^ (1 << r.int(31))) >>> 0;
        }
      }),
      bad_geometry: (t, rank) => [this.#badGeometry(t, rank)],
      misplaced_meta: (t, rank) => [this.#misplacedMeta(t, rank)],
      wrong_stream: edit((record, t) => {
        record.stream = t === "weights" ? "grads" : "weights";
        record.rank = t === "weights" ? 0 : -1;
      }),
      wrong_total: (t, rank) => [this.#wrongTotal(t, rank)],
      out_of_order_stream: (t, rank) => {
        const kind = t as "grads" | "weights";
        const chunks = [0, 1, 2].map((i) =>
          pack(this.#smallStreamChunk(kind, rank, i))
        );
        return r.shuffle([...chunks, r.pick(chunks)]);
      },
      // Built from captured traffic by `replays` and `streamConflicts`.
      old_step_replay: null,
      replay_wrong_subject: null,
      identical_duplicate: null,
      conflicting_duplicate: null,
      split_conflict: null,
    };
  }

  /** Sets a number field, or an item of the kind's array field, to `value`. */
  #setNumber(record: WireRecord, kind: TemplateKind, value: number): void {
    const arrayField = ARRAY_FIELDS[kind];
    if (arrayField !== undefined && this.#random.next() < 0.3) {
      record[arrayField] = [0, value];
      return;
    }
    record[this.#random.pick(NUMBER_FIELDS[kind])] = value;
  }

  /**
   * A length header claiming far more than follows: a `map32` of 4 G
   * entries around the real fields, or one field's `bin`, `str`, `array`,
   * `map` or `ext` header claiming about 4 GiB.
   */
  #hugeDeclaredLength(kind: TemplateKind, rank: number): Uint8Array {
    const record = this.#template(kind, rank);
    const r = this.#random;

    if (r.next() < 0.2) {
      const bytes = pack(record);
      return concat(
        new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff]),
        bytes.subarray(1),
      );
    }
    const field = r.pick(Object.keys(record));
    delete record[field];
    const header = r.pick([
      [0xc6, 0xff, 0xff, 0xff, 0xf0],
      [0xdb, 0xff, 0xff, 0xff, 0xf0],
      [0xdd, 0xff, 0xff, 0xff, 0xf0],
      [0xdf, 0xff, 0xff, 0xff, 0xf0],
      [0xc9, 0xff, 0xff, 0xff, 0xf0, 0x05],
      [0xc5, 0xff, 0xf0],
      [0xdc, 0xff, 0xf0],
    ]);
    // Filler of valid one-byte values, so that the decoder runs out of
    // bytes rather than into a bad token.
    const filler = new Uint8Array(8).fill(0x01);
    return withRawField(record, field, concat(new Uint8Array(header), filler));
  }

  /** msgpack that is not a plain map of the schema's types. */
  #oddity(kind: TemplateKind, rank: number): Uint8Array {
    const record = this.#template(kind, rank);
    const r = this.#random;
    const deep = (depth: number, open: number) => {
      const bytes = new Uint8Array(depth + 1).fill(open);
      bytes[depth] = 0x01;
      return bytes;
    };

    switch (r.int(9)) {
      case 0:
        return pack(Object.values(record));
      case 1:
        return pack(r.pick([42, null, "hello", 1.5, true]));
      case 2:
        return pack(new Date(0));
      case 3:
        return concat(new Uint8Array([0xd4, r.int(256)]), r.bytes(1));
      case 4:
        return deep(1000 + r.int(100_000), 0x91);
      case 5:
        return new Uint8Array([0x82, 0x01, 0x02, 0x03, 0x04]);
      case 6:
        // The same key twice: msgpack allows it, the last value wins.
        return withRawField(
          record,
          "v",
          pack(r.pick([2, "1", null])),
          { keep: true },
        );
      case 7:
        return withRawField(record, "__proto__", pack({ polluted: true }), {
          keep: true,
        });
      default:
        record[r.pick(Object.keys(record))] = new Map([[1, 2]]);
        return pack(record);
    }
  }

  #nonFinite(kind: TemplateKind, rank: number): Uint8Array {
    const record = this.#template(kind, rank);
    const r = this.#random;
    const value = r.pick(NON_FINITE);
    const isChunk = kind === "grads" || kind === "weights";

    if (isChunk && r.next() < 0.6) {
      const payload = record.payload as Uint8Array;
      if (
        record.meta !== undefined && (payload.length === 0 || r.next() < 0.3)
      ) {
        record.meta = { ...(record.meta as WireRecord), lr: value };
        return pack(record);
      }
      const view = new DataView(payload.buffer, payload.byteOffset);
      view.setFloat32(4 * r.int(payload.length / 4), value, true);
      record.crc32 = crc32(payload);
      return pack(record);
    }
    record[r.pick(NUMBER_FIELDS[kind])] = value;
    return pack(record);
  }

  /** Above a size limit: the message, a string, an array or `meta`. */
  #oversized(kind: TemplateKind, rank: number): Uint8Array {
    const record = this.#template(kind, rank);
    const r = this.#random;
    const long = (n: number) => "h".repeat(n);

    switch (kind) {
      case "hello":
        if (r.next() < 0.5) record[r.pick(["host", "backend"])] = long(257);
        else record.missing = Array.from({ length: 257 }, (_, i) => i);
        break;
      case "welcome":
      case "control":
        record.reason = long(WIRE_LIMITS.maxReasonChars + 1);
        break;
      case "resend":
        record.chunks = Array.from({ length: 300 }, (_, i) => i);
        break;
      case "grads":
      case "weights": {
        const chunk = this.#chunk(kind, rank, {
          index: 0,
          count: 3,
          chunkFloats: 8,
          total: 24,
        });
        const choice = r.int(kind === "grads" ? 4 : 3);
        if (choice === 0) {
          chunk.meta = Object.fromEntries(
            Array.from({ length: 65 }, (_, i) => [`k${i}`, i]),
          );
        } else if (choice === 1) {
          chunk.meta = { note: long(4097) };
        } else if (choice === 2) {
          chunk.run = long(WIRE_LIMITS.maxRunChars + 1);
        } else {
          // Above the PS connection's max_payload: a message routed from
          // a server with a larger one (see runtime_rejections_test.ts).
          return pack(this.#chunk(kind, rank, {
            index: 0,
            count: 2,
            chunkFloats: 70_000,
            total: 100_000,
          }));
        }
        return pack(chunk);
      }
    }
    return pack(record);
  }

  #badGeometry(kind: TemplateKind, rank: number): Uint8Array {
    const record = this.#template(kind, rank);
    const r = this.#random;
    const count = record.count as number;

    switch (r.int(6)) {
      case 0:
        record.offset = (record.offset as number) + 1 + r.int(7);
        break;
      case 1:
        record.index = count + r.int(3);
        break;
      case 2:
        record.count = 0;
        break;
      case 3: {
        const payload = r.bytes(4 * r.int(4) + r.pick([1, 2, 3]));
        record.payload = payload;
        record.crc32 = crc32(payload);
        break;
      }
      case 4:
        record.total = (record.offset as number) + r.int(4);
        break;
      default:
        record.offset = (record.total as number) + 8;
    }
    return pack(record);
  }

  #misplacedMeta(kind: TemplateKind, rank: number): Uint8Array {
    const r = this.#random;
    const k = kind as "grads" | "weights";

    switch (r.int(3)) {
      case 0: {
        const first = this.#smallStreamChunk(k, rank, 0);
        delete first.meta;
        return pack(first);
      }
      case 1: {
        const later = this.#smallStreamChunk(k, rank, 1 + r.int(2));
        return pack({ ...later, meta: GRADS_META });
      }
      default: {
        const first = this.#smallStreamChunk(k, rank, 0);
        first.meta = r.pick([[1, 2], "meta", null, 5]);
        return pack(first);
      }
    }
  }

  /** A well-formed chunk of a stream of another length than the layout. */
  #wrongTotal(kind: TemplateKind, rank: number): Uint8Array {
    const k = kind as "grads" | "weights";
    const r = this.#random;
    const length = this.#env.streamLength;
    const total = r.pick([24, length + 8, length - 8, 2 ** 30]);
    const chunkFloats = total === 2 ** 30 ? 1024 : 8;
    const count = Math.ceil(total / chunkFloats);
    const index = r.pick([0, count - 1, r.int(count)]);
    return pack(this.#chunk(k, rank, { index, count, chunkFloats, total }));
  }

  // ---- collisions with a stream held in part ----

  #conflictingPayload(chunk: TensorChunkMessage): Uint8Array {
    const values = new Float32Array(chunk.payload);
    const at = this.#random.int(values.length);
    values[at] += 0.5;
    return pack(chunkRecord({ ...chunk, values }));
  }

  #conflictingMeta(chunk: TensorChunkMessage): Uint8Array {
    const meta = { ...chunk.meta, epoch: 0, lossSum: 0.125, correct: 0 };
    return pack(chunkRecord({ ...chunk, values: chunk.payload, meta }));
  }

  /**
   * Chunks of other uniform splits of the same stream: the missing last
   * index with a chunk size one smaller, and chunk 0 of a split into one
   * more chunk. Each is well-formed alone and disagrees with the chunks
   * already received on the count or the chunk size.
   */
  #otherSplits(first: TensorChunkMessage): Uint8Array[] {
    const { count, total } = first;
    const size = chunkFloatsOf(first);
    const out: Uint8Array[] = [];
    const values = (n: number) =>
      Float32Array.from({ length: n }, () => this.#random.next());
    const piece = (index: number, splitCount: number, splitSize: number) => {
      const offset = index * splitSize;
      return pack(chunkRecord({
        ...first,
        index,
        count: splitCount,
        offset,
        values: values(Math.min(splitSize, total - offset)),
        ...(index === 0 ? { meta: first.meta } : { meta: undefined }),
      }));
    };

    const last = count - 1;
    const smaller = size - 1;
    if (last > 0 && total - last * smaller <= smaller) {
      out.push(piece(last, count, smaller));
    }
    const moreSize = Math.ceil(total / (count + 1));
    if (Math.ceil(total / moreSize) === count + 1) {
      out.push(piece(0, count + 1, moreSize));
      out.push(piece(count, count + 1, moreSize));
    }
    return out;
  }
}

/**
 * Packs `record` and appends `key` with raw msgpack bytes as its value
 * (removing `key` from the record first, unless `keep`).
 */
function withRawField(
  record: WireRecord,
  key: string,
  raw: Uint8Array,
  options: { keep?: boolean } = {},
): Uint8Array {
  const rest = { ...record };
  if (!options.keep) delete rest[key];
  const bytes = pack(rest);
  if ((bytes[0] & 0xf0) !== 0x80 || (bytes[0] & 0x0f) === 0x0f) {
    throw new RangeError("withRawField needs a fixmap of at most 14 keys");
  }
  bytes[0]++;
  return concat(bytes, pack(key), raw);
}
