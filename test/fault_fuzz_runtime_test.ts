/**
 * Hostile or broken input during a real run (issue #5): more than 10,000
 * malformed messages to the parameter server and more than 10,000 to each
 * worker, while they train. Nothing crashes, the weights end as a clean
 * run's, and every message is counted by reason, in the PS's summary.json
 * and metrics.jsonl and in each worker's result, and logged.
 *
 * The messages (test/_fuzz_messages.ts) are valid messages of every kind
 * broken one way each: random bytes, truncated and valid-prefix msgpack,
 * wrong types, huge declared lengths, negative and huge numbers, another
 * run's id, NaN and Inf, oversized messages, duplicated chunks with other
 * contents, chunks of other splits, streams out of order, and verbatim
 * replays of the previous step's chunks and of the join's welcomes.
 *
 * Three kinds are dropped uncounted by design and excluded from the
 * counts: chunks of an older step (replays; collector.ts and worker.ts
 * drop them as late re-sends), exact repeats of a chunk already received
 * (StreamAssembler drops them as retransmissions), and repeats of the
 * welcome a worker joined with (worker.ts: same PS session).
 *
 * Never sent, and tallied in the generator's `withheld` instead:
 *
 * - messages the receiver would accept or act on. A valid `stop`, a
 *   welcome from another PS session, a heartbeat (replayed ones too: the
 *   PS takes them as news), a gradient chunk of the current step or a
 *   weights chunk of a later one (a worker starts a new stream on it) is
 *   legitimate as far as the wire can tell; keeping clients that may not
 *   send them off the run's subjects is what NATS authorization is for
 *   (docs/security.md);
 * - invalid messages the runtime drops uncounted today: a gradient chunk
 *   of an attempt the PS is not collecting (even one it never planned),
 *   and a resend request for a step newer than the worker's last answer.
 *
 * Timing: the injection starts when both workers hold all but the last
 * chunk of step 1's weights (each worker's connection holds the last one
 * back), so that duplicates can collide with a stream in progress; the
 * held chunks are released when the injection is done. The same for the
 * first gradient stream of step 1 at the PS. Messages go out in bursts of
 * 500 with a macrotask between them, so heartbeats keep flowing.
 *
 * The two tests after the fuzz test pin defects it found (fixed since).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { join } from "node:path";
import { runPsRole, runWorkerRole } from "../src/train/run_job.ts";
import {
  InProcessHub,
  type MessageHandler,
  type RunSubjects,
  subjects,
  type Subscription,
  type Transport,
  TransportError,
} from "../src/transport/mod.ts";
import {
  decodeMessage,
  encodeMessage,
  type TensorChunkMessage,
  WIRE_ERROR_REASONS,
  WIRE_LIMITS,
  WireError,
} from "../src/wire/mod.ts";
import type { JobConfig } from "../src/config.ts";
import type { RunSummary } from "../src/train/summary.ts";
import type { WorkerResult } from "../src/worker/worker.ts";
import {
  type BulkTarget,
  type CapturedMessage,
  FUZZ_CATEGORIES,
  type FuzzEnv,
  FuzzGenerator,
  type FuzzMessage,
  partialStreamOf,
  psVerdicts,
  type VerdictFn,
  workerVerdicts,
} from "./_fuzz_messages.ts";
import {
  captureLogger,
  createTinyDataset,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

/** The max_payload the PS's and the workers' connections see. */
const SMALL_MAX_PAYLOAD_BYTES = 256 * 1024;
/** The bus's own limit: room for one message above the decoder's. */
const HUB_MAX_PAYLOAD_BYTES = WIRE_LIMITS.maxMessageBytes + 1024;
const RUN_ID = "fuzz-run";
const SEED = 20_505;
const BURST = 500;

/**
 * The connection of a process under test: publishes limited to 256 KiB
 * (as a server with a small max_payload would refuse them), and, on the
 * `watch` subject, one message held back when `tap` says so, until
 * `release()`.
 */
class ConnectionUnderTest implements Transport {
  readonly maxPayloadBytes = SMALL_MAX_PAYLOAD_BYTES;
  readonly #inner: Transport;
  readonly #watch: string;
  readonly #tap: (subject: string, data: Uint8Array) => "hold" | "pass";
  #state: "watching" | "holding" | "released" = "watching";
  #held: (() => void) | undefined;

  constructor(
    inner: Transport,
    options: {
      watch: string;
      tap: (subject: string, data: Uint8Array) => "hold" | "pass";
    },
  ) {
    this.#inner = inner;
    this.#watch = options.watch;
    this.#tap = options.tap;
  }

  get closed(): Promise<Error | undefined> {
    return this.#inner.closed;
  }

  /** Whether a message was held and then delivered. */
  get released(): boolean {
    return this.#state === "released";
  }

  publish(subject: string, data: Uint8Array): void {
    if (data.length > this.maxPayloadBytes) {
      throw new TransportError({
        code: "max_payload_exceeded",
        subject,
        message: `${data.length} bytes is above max_payload`,
      });
    }
    this.#inner.publish(subject, data);
  }

  subscribe(subject: string, handler: MessageHandler): Subscription {
    if (subject !== this.#watch) return this.#inner.subscribe(subject, handler);
    return this.#inner.subscribe(subject, (data, from) => {
      if (this.#state === "watching" && this.#tap(from, data) === "hold") {
        const copy = data.slice();
        this.#state = "holding";
        this.#held = () => handler(copy, from);
        return;
      }
      handler(data, from);
    });
  }

  /** Delivers the held message, if one is held. */
  release(): void {
    if (this.#state !== "holding") return;
    this.#state = "released";
    this.#held?.();
  }

  flush(): Promise<void> {
    return this.#inner.flush();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** Decodes a chunk of the run, or `undefined` for anything else. */
function peekChunk(data: Uint8Array): TensorChunkMessage | undefined {
  try {
    return decodeMessage(data, {
      run: RUN_ID,
      workers: 2,
      kinds: ["tensor_chunk"],
    });
  } catch (error) {
    if (error instanceof WireError) return undefined;
    throw error;
  }
}

function decodeChunks(messages: CapturedMessage[]): TensorChunkMessage[] {
  return messages.map((m) => peekChunk(m.bytes)!);
}

/**
 * Where the bulk goes. To the PS: heartbeats and gradients of both ranks,
 * and subjects of ranks that do not exist or are misspelled (`grads.01`).
 * To the workers: weights and control (both workers get them), and each
 * rank's welcome and resend subjects.
 */
function bulkTargets(
  s: RunSubjects,
  verdicts: { ps: VerdictFn; worker: VerdictFn },
): BulkTarget[] {
  const { ps, worker } = verdicts;
  const to = (
    subject: string,
    template: BulkTarget["template"],
    rank: number,
    verdictOf: VerdictFn,
    count: number,
  ): BulkTarget => ({ subject, template, rank, verdictOf, count });

  return [
    to(s.hello(0), "hello", 0, ps, 2_000),
    to(s.hello(1), "hello", 1, ps, 2_000),
    to(s.hello(7), "hello", 0, ps, 100),
    to(s.grads(0), "grads", 0, ps, 3_000),
    to(s.grads(1), "grads", 1, ps, 3_000),
    to(s.grads(9), "grads", 1, ps, 100),
    // `grads.01`: not the subject of any rank.
    to(`${s.grads(0)}1`, "grads", 1, ps, 50),
    to(s.weights, "weights", 0, worker, 6_000),
    to(s.control, "control", 0, worker, 3_000),
    to(s.welcome(0), "welcome", 0, worker, 800),
    to(s.welcome(1), "welcome", 1, worker, 800),
    to(s.resend(0), "resend", 0, worker, 800),
    to(s.resend(1), "resend", 1, worker, 800),
  ];
}

/** What one fuzzed run produced. */
interface FuzzedRun {
  summary: RunSummary;
  workerResults: WorkerResult[];
  sent: FuzzMessage[];
  withheld: Map<string, number>;
  lines: string[];
  outDir: string;
  handlerErrors: string[];
  released: { ps: boolean; workers: boolean[] };
}

/**
 * Runs the PS and two workers on an in-process bus and fuzzes them as the
 * module doc says. `streamLength` is the variable layout's size.
 */
async function runFuzzed(
  config: JobConfig,
  streamLength: number,
): Promise<FuzzedRun> {
  const s = subjects("dptrain", RUN_ID);
  const env: FuzzEnv = { runId: RUN_ID, workers: 2, streamLength, subjects: s };
  const generator = new FuzzGenerator(env, SEED);
  const hub = new InProcessHub({ maxPayloadBytes: HUB_MAX_PAYLOAD_BYTES });
  const handlerErrors: string[] = [];
  const connect = () =>
    hub.connect({
      onHandlerError: (error, subject) =>
        handlerErrors.push(`${subject}: ${(error as Error)?.stack ?? error}`),
    });
  const injector = hub.connect();
  const sent: FuzzMessage[] = [];
  const injections: Promise<void>[] = [];
  const injectionErrors: unknown[] = [];
  // Started from a message handler: errors are kept for the end.
  const startInjection = (injection: Promise<void>) =>
    injections.push(injection.catch((error) => {
      injectionErrors.push(error);
    }));

  // Real traffic, captured before the injection starts: step 0's chunks
  // (to replay), and the step 1 chunks each receiver holds in part.
  let injecting = false;
  const step0Grads: CapturedMessage[] = [];
  const step0Weights: CapturedMessage[] = [];
  const step1Weights: CapturedMessage[] = [];
  const step1Grads = new Map<number, CapturedMessage[]>();
  const step0Hellos: CapturedMessage[] = [];
  const step0Welcomes: CapturedMessage[] = [];
  let workersHolding = 0;
  const capture =
    (into: CapturedMessage[]) => (data: Uint8Array, subject: string) => {
      if (!injecting) into.push({ subject, bytes: data.slice() });
    };
  injector.subscribe(s.helloAll, capture(step0Hellos));
  for (const rank of [0, 1]) {
    injector.subscribe(s.welcome(rank), capture(step0Welcomes));
  }

  const publishInBursts = async (messages: FuzzMessage[]) => {
    for (let start = 0; start < messages.length; start += BURST) {
      for (const message of messages.slice(start, start + BURST)) {
        injector.publish(message.subject, message.bytes);
        sent.push(message);
      }
      await injector.flush();
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
  };

  // Phase A, while both workers hold step 1's weights in part and the PS
  // waits for step 1's gradients: the bulk, the replays of step 0, and
  // collisions with the weights stream.
  const injectWhileWorkersHold = async () => {
    injecting = true;
    try {
      const ps = psVerdicts(env, {
        step: 1,
        attempt: 0,
        maxMessageBytes: SMALL_MAX_PAYLOAD_BYTES,
      });
      const [welcome] = step0Welcomes.map((m) =>
        decodeMessage(m.bytes, { run: RUN_ID, workers: 2, kinds: ["welcome"] })
      );
      const worker = workerVerdicts(env, {
        version: { step: 1, attempt: 0 },
        last: { step: 0, attempt: 0 },
        partial: partialStreamOf(decodeChunks(step1Weights)),
        session: welcome?.session,
      });
      const messages = generator.shuffle([
        ...generator.bulk(bulkTargets(s, { ps, worker })),
        ...generator.replays(step0Grads, {
          verdictOf: ps,
          wrongSubject: (subject) => s.grads(1 - s.rankOf(subject)!),
        }),
        ...generator.replays(step0Weights, { verdictOf: worker }),
        // The PS takes a replayed heartbeat as news: all withheld.
        ...generator.replays(step0Hellos, { verdictOf: ps }),
        ...generator.replays(step0Welcomes, { verdictOf: worker }),
        ...generator.streamConflicts(step1Weights, {
          verdictOf: worker,
          copies: 3,
        }),
        generator.hugeMessage(s.weights, worker),
      ]);
      await publishInBursts(messages);
    } finally {
      for (const connection of workers) connection.release();
    }
  };

  // Phase B, while the PS holds the first gradient stream of step 1 in
  // part: collisions with it.
  const injectWhilePsHolds = async (real: CapturedMessage[]) => {
    try {
      const ps = psVerdicts(env, {
        step: 1,
        attempt: 0,
        maxMessageBytes: SMALL_MAX_PAYLOAD_BYTES,
        partial: partialStreamOf(decodeChunks(real)),
      });
      await publishInBursts(
        generator.streamConflicts(real, { verdictOf: ps, copies: 5 }),
      );
    } finally {
      psConnection.release();
    }
  };

  const workerTap = (rank: number) => (subject: string, data: Uint8Array) => {
    const chunk = peekChunk(data);
    if (chunk?.stream !== "weights" || chunk.total !== streamLength) {
      return "pass";
    }
    const captured = { subject, bytes: data.slice() };
    if (chunk.step === 0 && rank === 0 && !injecting) {
      step0Weights.push(captured);
    }
    if (chunk.step !== 1 || chunk.attempt !== 0) return "pass";
    if (chunk.index < chunk.count - 1) {
      if (rank === 0) step1Weights.push(captured);
      return "pass";
    }
    workersHolding++;
    if (workersHolding === 2) startInjection(injectWhileWorkersHold());
    return "hold";
  };

  const psTap = (subject: string, data: Uint8Array) => {
    const chunk = peekChunk(data);
    if (
      chunk?.stream !== "grads" || chunk.total !== streamLength ||
      s.rankOf(subject) !== chunk.rank
    ) {
      return "pass";
    }
    const captured = { subject, bytes: data.slice() };
    if (chunk.step === 0 && !injecting) step0Grads.push(captured);
    if (chunk.step !== 1 || chunk.attempt !== 0) return "pass";
    const stream = step1Grads.get(chunk.rank) ?? [];
    step1Grads.set(chunk.rank, stream);
    if (chunk.index < chunk.count - 1) {
      stream.push(captured);
      return "pass";
    }
    startInjection(injectWhilePsHolds(stream));
    return "hold";
  };

  const psConnection = new ConnectionUnderTest(connect(), {
    watch: s.gradsAll,
    tap: psTap,
  });
  const workers = [0, 1].map((rank) =>
    new ConnectionUnderTest(connect(), {
      watch: s.weights,
      tap: workerTap(rank),
    })
  );
  const { log, lines } = captureLogger(RUN_ID);
  const outDir = await Deno.makeTempDir({
    dir: join(config.data.root, ".."),
    prefix: `${RUN_ID}_`,
  });

  try {
    const [summary, ...workerResults] = await Promise.all([
      runPsRole({
        config,
        runId: RUN_ID,
        transport: psConnection,
        log: log.child("ps"),
        outDir,
        backend: "cpu",
      }),
      ...workers.map((transport, rank) =>
        runWorkerRole({
          config,
          runId: RUN_ID,
          rank,
          transport,
          log: log.child(`worker ${rank}`),
          backend: "cpu",
        })
      ),
    ]);
    await Promise.all(injections);
    if (injectionErrors.length > 0) throw injectionErrors[0];
    return {
      summary: summary as RunSummary,
      workerResults: workerResults as WorkerResult[],
      sent,
      withheld: generator.withheld,
      lines,
      outDir,
      handlerErrors,
      released: {
        ps: psConnection.released,
        workers: workers.map((w) => w.released),
      },
    };
  } finally {
    await Promise.all(injections);
    for (const c of [psConnection, ...workers, injector]) await c.close();
  }
}

/** Counts of rejection verdicts (`ignored` left out), by reason. */
function expectedCounts(messages: FuzzMessage[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { verdict } of messages) {
    if (verdict !== "ignored") counts[verdict] = (counts[verdict] ?? 0) + 1;
  }
  return counts;
}

function nonZero(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
}

function countBy<T>(items: T[], key: (item: T) => string) {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

Deno.test({
  name: "fuzz - 10,000+ bad messages to the PS and each worker: all counted, " +
    "weights unchanged",
  fn: fuzzARun,
});

/** The fuzz test's body; see the module doc. */
async function fuzzARun(): Promise<void> {
  const dataset = await createTinyDataset();
  // Re-sends wait 120 s, so the held chunks stay missing while the fuzz
  // runs; heartbeats may lapse for 30 s while the bursts are decoded; a
  // run that hangs fails after 60 s instead of 300. Step 2 shows that
  // the run goes on normally after the fuzz.
  const config = tinyJobConfig(dataset, {
    train: {
      maxSteps: 3,
      retrySeconds: 120,
      heartbeatTimeoutSeconds: 30,
      stallWarnSeconds: 10,
      stallAbortSeconds: 60,
    },
  });
  const tensorsBefore = tf.memory().numTensors;

  try {
    const clean = await trainTiny(config, { runId: "fuzz-clean" });
    const started = performance.now();
    const run = await runFuzzed(config, clean.weights.length);
    const seconds = (performance.now() - started) / 1000;
    const s = subjects("dptrain", RUN_ID);

    // No crash: no handler threw, every role finished, both holds worked.
    assert.deepEqual(run.handlerErrors, []);
    assert.deepEqual(run.released, { ps: true, workers: [true, true] });
    assert.equal(run.summary.steps, 3);
    assert.equal(run.summary.skippedSteps, 0);

    // No change to the weights.
    assert.equal(run.summary.weightsSha256, clean.summary.weightsSha256);

    // Every message the PS got is counted by reason: in summary.json, in
    // the metrics (cumulative, from the step the fuzz hit), in the log.
    const toPs = run.sent.filter((m) =>
      m.subject.startsWith(s.hello(0).slice(0, -1)) ||
      m.subject.startsWith(s.grads(0).slice(0, -1))
    );
    const psExpected = expectedCounts(toPs);
    const psTotal = Object.values(psExpected).reduce((a, b) => a + b, 0);
    assert.ok(toPs.length >= 10_000, `${toPs.length} messages to the PS`);
    assert.deepEqual(run.summary.rejectedMessages, psExpected);
    const written = JSON.parse(
      await Deno.readTextFile(join(run.outDir, "summary.json")),
    );
    assert.deepEqual(written.rejectedMessages, psExpected);
    const records = (await Deno.readTextFile(join(run.outDir, "metrics.jsonl")))
      .trim().split("\n").map((line) => JSON.parse(line));
    const rejectedByRecord = records.map((r) => [r.type, r.step, r.rejected]);
    assert.deepEqual(rejectedByRecord, [
      ["step", 0, {}],
      ["step", 1, psExpected],
      ["step", 2, psExpected],
      ["epoch", 2, psExpected],
    ]);
    const psDropLines = run.lines.filter((l) =>
      l.includes(`[run=${RUN_ID} ps`) && l.includes("dropped a message (")
    );
    assert.equal(psDropLines.length, psTotal);

    // The same for each worker: weights and control reach both.
    for (const rank of [0, 1]) {
      const mine = new Set([
        s.weights,
        s.control,
        s.welcome(rank),
        s.resend(rank),
      ]);
      const toWorker = run.sent.filter((m) => mine.has(m.subject));
      const expected = expectedCounts(toWorker);
      const total = Object.values(expected).reduce((a, b) => a + b, 0);
      assert.ok(toWorker.length >= 10_000, `${toWorker.length} to ${rank}`);
      assert.deepEqual(
        nonZero(run.workerResults[rank].rejections),
        expected,
        `worker ${rank}`,
      );
      const dropLines = run.lines.filter((l) =>
        l.includes(`[run=${RUN_ID} worker ${rank}`) &&
        l.includes("dropped a message (")
      );
      assert.equal(dropLines.length, total, `worker ${rank} log lines`);
    }

    // Coverage: every category was sent, every reason counted at the PS,
    // and every reason but `wrong_step` at the workers (worker.ts takes
    // weights of any step; a later one starts a new stream: withheld).
    const byCategory = countBy(run.sent, (m) => m.category);
    for (const category of FUZZ_CATEGORIES) {
      assert.ok(byCategory[category] > 0, `no ${category} message sent`);
    }
    assert.deepEqual(
      Object.keys(psExpected).sort(),
      [...WIRE_ERROR_REASONS].sort(),
    );
    for (const { rejections } of run.workerResults) {
      assert.deepEqual(
        Object.keys(nonZero(rejections)).sort(),
        WIRE_ERROR_REASONS.filter((r) => r !== "wrong_step").sort(),
      );
    }
    assert.equal(tf.memory().numTensors, tensorsBefore);

    if (Deno.env.get("DPTRAIN_FUZZ_REPORT")) {
      console.log(JSON.stringify(
        {
          seconds,
          sent: run.sent.length,
          toPs: toPs.length,
          ps: psExpected,
          psIgnored: toPs.length - psTotal,
          workers: run.workerResults.map((w) => nonZero(w.rejections)),
          byCategory,
          withheld: Object.fromEntries(run.withheld),
        },
        null,
        1,
      ));
    }
  } finally {
    await dataset.remove();
  }
}

const REPRO_RUN_ID = "fuzz-repro";

/**
 * Publishes `bytes` on `subject` once, when the first weights chunk of
 * step 1 goes out.
 */
function injectAtStep1(subject: string, bytes: Uint8Array) {
  return (transport: Transport) => {
    const s = subjects("dptrain", REPRO_RUN_ID);
    let done = false;
    transport.subscribe(s.weights, (data) => {
      const chunk = decodeMessage(data, {
        run: REPRO_RUN_ID,
        workers: 2,
        kinds: ["tensor_chunk"],
      });
      if (chunk.step !== 1 || done) return;
      done = true;
      transport.publish(subject, bytes);
    });
  };
}

// worker.ts `onWeightsChunk` once made a chunk of a later version the
// worker's version (new assembler, queued step dropped) before
// `StreamAssembler.add` checked it: the chunk was counted (`wrong_length`),
// yet the worker then ignored step 1's real weights as older, and the PS
// stalled.
Deno.test({
  name:
    "fuzz - a rejected weights chunk of a later step leaves the worker's step alone",
  fn: async () => {
    const dataset = await createTinyDataset();
    const config = tinyJobConfig(dataset, {
      train: { maxSteps: 3, stallWarnSeconds: 5, stallAbortSeconds: 15 },
    });
    const s = subjects("dptrain", REPRO_RUN_ID);
    // Well-formed, but 24 floats long: the assembler's `wrong_length`.
    const bad = encodeMessage({
      kind: "tensor_chunk",
      run: REPRO_RUN_ID,
      step: 5,
      stream: "weights",
      rank: -1,
      index: 0,
      count: 3,
      offset: 0,
      total: 24,
      payload: new Float32Array(8),
      meta: {},
    });

    try {
      const clean = await trainTiny(config, { runId: "fuzz-repro-clean" });
      const run = await trainTiny(config, {
        runId: REPRO_RUN_ID,
        inject: injectAtStep1(s.weights, bad),
      });
      assert.equal(run.summary.steps, 3);
      assert.equal(run.summary.weightsSha256, clean.summary.weightsSha256);
    } finally {
      await dataset.remove();
    }
  },
});

// collector.ts `#add` once dropped a chunk of any attempt but the current
// one uncounted, even of an attempt no PS planned (here 3, in a run where
// every step has one attempt).
Deno.test({
  name: "fuzz - a gradient chunk of an attempt never planned is counted",
  fn: async () => {
    const dataset = await createTinyDataset();
    const config = tinyJobConfig(dataset, {
      train: { stallWarnSeconds: 5, stallAbortSeconds: 15 },
    });
    const s = subjects("dptrain", REPRO_RUN_ID);
    const stray = encodeMessage({
      kind: "tensor_chunk",
      run: REPRO_RUN_ID,
      step: 1,
      stream: "grads",
      rank: 0,
      attempt: 3,
      index: 0,
      count: 3,
      offset: 0,
      total: 24,
      payload: new Float32Array(8),
      meta: {},
    });

    try {
      const run = await trainTiny(config, {
        runId: REPRO_RUN_ID,
        inject: injectAtStep1(s.grads(0), stray),
      });
      const counted = Object.values(run.summary.rejectedMessages)
        .reduce((a, b) => a + b, 0);
      assert.equal(counted, 1);
    } finally {
      await dataset.remove();
    }
  },
});
