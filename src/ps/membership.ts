/**
 * Who takes part, and who is alive. Workers announce themselves with
 * `hello` and repeat it as their heartbeat; the parameter server accepts a
 * rank whose config fingerprint equals its own, refuses any other with a
 * reason the worker prints, and declares a rank dead when its heartbeats
 * stop for longer than the timeout.
 *
 * A worker cannot send heartbeats while it computes (tfjs blocks its event
 * loop), so a rank's timeout is at least three times its last step time
 * plus 5 s.
 *
 * @module
 */
import {
  decodeMessage,
  encodeMessage,
  type HelloMessage,
  type RejectionCounter,
  WireError,
  type WorkerState,
} from "../wire/mod.ts";
import type { RunSubjects, Subscription, Transport } from "../transport/mod.ts";
import type { Logger } from "../log.ts";
import { checkSubjectRank } from "../protocol/subject_rank.ts";

const FIRST_STEP_GUESS_SECONDS = 20;

/** A worker that joined, with what its last heartbeat said. */
export interface Member {
  rank: number;
  backend: string;
  device: string | null;
  pid: number;
  host: string;
  /** Whether its heartbeats are current. */
  alive: boolean;
  /** `performance.now()` of its last heartbeat or gradient chunk. */
  lastSeen: number;
  /** Its last heartbeat: the step and attempt it is at, and its state. */
  step: number;
  attempt: number;
  state: WorkerState;
  /** Missing weights chunks it reported while `waiting`. */
  missing: number[];
  /** Its last step's compute time. */
  stepSeconds: number;
}

/** Options of {@linkcode Membership}. */
export interface MembershipOptions {
  runId: string;
  workers: number;
  fingerprint: string;
  transport: Transport;
  subjects: RunSubjects;
  rejections: RejectionCounter;
  log: Logger;
  /** The step a joining worker starts at. */
  startStep: () => number;
  /** Seconds of silence after which a rank is dead (see the module doc). */
  heartbeatTimeoutSeconds: number;
  /** This PS process's id, sent with every welcome. */
  session: string;
}

/** Raised when too few ranks are live within the abort threshold. */
export class JoinTimeoutError extends Error {
  /** Ranks that were not live in time. */
  readonly missingRanks: number[];

  /** Makes the error, naming `missingRanks` and the `seconds` waited. */
  constructor(missingRanks: number[], seconds: number) {
    super(
      `rank(s) ${missingRanks.join(", ")} did not join within ${seconds} s; ` +
        "start them with the same --run-id and --nats URL",
    );
    this.name = "JoinTimeoutError";
    this.missingRanks = missingRanks;
  }
}

/** See the module doc. */
export class Membership {
  readonly #options: MembershipOptions;
  readonly #members = new Map<number, Member>();
  readonly #subscription: Subscription;
  #listeners: (() => void)[] = [];
  /** Refusals so far, by rank, for the summary. */
  readonly refused: { rank: number; reason: string }[] = [];
  /** Joins, deaths and returns, for the metrics. */
  readonly events: { rank: number; event: string; step: number }[] = [];

  constructor(options: MembershipOptions) {
    this.#options = options;
    this.#subscription = options.transport.subscribe(
      options.subjects.helloAll,
      (data, subject) => this.#onHello(data, subject),
    );
  }

  /** Every rank that ever joined, in rank order. */
  get members(): Member[] {
    return [...this.#members.values()].sort((a, b) => a.rank - b.rank);
  }

  /** A joined rank, alive or not. */
  get(rank: number): Member | undefined {
    return this.#members.get(rank);
  }

  /** Live ranks, ascending. */
  live(): number[] {
    return this.members.filter((m) => m.alive).map((m) => m.rank);
  }

  /** Ranks in `ranks` that are not live. */
  missing(ranks: readonly number[]): number[] {
    return ranks.filter((r) => !this.#members.get(r)?.alive);
  }

  /** Counts a gradient chunk from `rank` as a sign of life. */
  touch(rank: number): void {
    const member = this.#members.get(rank);
    if (member?.alive) member.lastSeen = performance.now();
  }

  /**
   * Declares dead every live rank silent past its timeout and returns
   * them; logs each with how long it was silent.
   */
  reapDead(step: number): number[] {
    const now = performance.now();
    const dead: number[] = [];

    for (const member of this.#members.values()) {
      if (!member.alive) continue;
      const silent = (now - member.lastSeen) / 1000;
      if (silent <= this.timeoutOf(member)) continue;
      member.alive = false;
      dead.push(member.rank);
      this.events.push({ rank: member.rank, event: "dead", step });
      this.#options.log.warn(
        `rank ${member.rank} (pid ${member.pid} on ${member.host}) is ` +
          `dead: no heartbeat for ${silent.toFixed(1)} s (timeout ` +
          `${this.timeoutOf(member).toFixed(1)} s)`,
        step,
      );
    }
    return dead;
  }

  /** The silence after which `member` is dead, in seconds. */
  timeoutOf(member: Member): number {
    // A first step also warms tfjs up (kernels, shaders) and its length is
    // not known yet: assume 20 s while the rank says it computes.
    const stepSeconds = member.state === "computing" && member.stepSeconds === 0
      ? FIRST_STEP_GUESS_SECONDS
      : member.stepSeconds;
    return Math.max(
      this.#options.heartbeatTimeoutSeconds,
      3 * stepSeconds + 5,
    );
  }

  /**
   * Resolves when `enough()` holds, re-checking on every join; logs who is
   * missing every `warnSeconds` and rejects with
   * {@linkcode JoinTimeoutError} after `abortSeconds`.
   */
  async waitUntil(
    enough: () => boolean,
    limits: {
      warnSeconds: number;
      abortSeconds: number;
      /** The ranks the wait is for, for the messages. */
      wanted: () => number[];
      step: number;
    },
  ): Promise<void> {
    const started = Date.now();
    const { log } = this.#options;
    let warned = 0;

    while (!enough()) {
      const waited = (Date.now() - started) / 1000;
      if (waited >= limits.abortSeconds) {
        throw new JoinTimeoutError(limits.wanted(), limits.abortSeconds);
      }
      await this.changed(Math.min(1000, (limits.abortSeconds - waited) * 1000));
      this.reapDead(limits.step);
      const now = (Date.now() - started) / 1000;
      if (now - warned >= limits.warnSeconds && !enough()) {
        warned = now;
        log.info(
          `waiting for rank(s) ${limits.wanted().join(", ")} to join ` +
            `(${Math.round(now)} s)`,
          limits.step,
        );
      }
    }
  }

  /** Resolves on the next join or return, or after `ms`. */
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#listeners.push(done);
    });
  }

  /** Stops answering `hello`. */
  close(): void {
    this.#subscription.unsubscribe();
    this.#notify();
  }

  #notify(): void {
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const listener of listeners) listener();
  }

  #onHello(data: Uint8Array, subject: string): void {
    const { runId, workers, fingerprint, log } = this.#options;
    let hello: HelloMessage;

    try {
      hello = decodeMessage(data, { run: runId, workers, kinds: ["hello"] });
      checkSubjectRank(this.#options.subjects, subject, hello);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      this.#options.rejections.record(error, { subject });
      return;
    }

    if (hello.fingerprint !== fingerprint) {
      this.#refuse(hello);
      return;
    }

    const known = this.#members.get(hello.rank);
    const step = this.#options.startStep();
    if (known && known.pid === hello.pid && known.host === hello.host) {
      this.#update(known, hello);
      if (!known.alive) {
        known.alive = true;
        this.events.push({ rank: hello.rank, event: "back", step });
        log.info(
          `rank ${hello.rank} is back (pid ${hello.pid}); it takes part ` +
            "from the next step",
          step,
        );
        this.#notify();
      }
      return;
    }

    if (known) {
      log.warn(
        `rank ${hello.rank} joined again from pid ${hello.pid} on ` +
          `${hello.host} (was pid ${known.pid} on ${known.host}); it ` +
          "replaces the old one",
        step,
      );
    }
    const member: Member = {
      rank: hello.rank,
      backend: hello.backend,
      device: hello.device,
      pid: hello.pid,
      host: hello.host,
      alive: true,
      lastSeen: performance.now(),
      step: hello.step,
      attempt: hello.attempt,
      state: hello.state,
      missing: hello.missing,
      stepSeconds: hello.stepSeconds,
    };
    this.#members.set(hello.rank, member);
    this.events.push({ rank: hello.rank, event: "joined", step });
    log.info(
      `rank ${hello.rank} joined: backend ${hello.backend}` +
        `${hello.device ? ` on ${hello.device}` : ""}, pid ${hello.pid} ` +
        `on ${hello.host}; it starts at step ${step}`,
      step,
    );
    this.#welcome(hello.rank, { accepted: true, reason: "" });
    this.#notify();
  }

  #update(member: Member, hello: HelloMessage): void {
    member.lastSeen = performance.now();
    member.step = hello.step;
    member.attempt = hello.attempt;
    member.state = hello.state;
    member.missing = hello.missing;
    member.stepSeconds = hello.stepSeconds;
    // A worker that lost its welcome keeps saying `joining`: answer again.
    if (hello.state === "joining") {
      this.#welcome(hello.rank, { accepted: true, reason: "" });
    }
  }

  #refuse(hello: HelloMessage): void {
    const { fingerprint, log } = this.#options;
    const reason = `config fingerprint ${hello.fingerprint.slice(0, 16)} ` +
      `differs from the parameter server's ${fingerprint.slice(0, 16)}: ` +
      "start every process with the same config file and the same " +
      "--alpha, --image-size, --weights, --batch-norm, --workers, " +
      "--batch, --seed and data folder";

    if (!this.refused.some((r) => r.rank === hello.rank)) {
      log.warn(`refused rank ${hello.rank} (pid ${hello.pid}): ${reason}`);
      this.refused.push({ rank: hello.rank, reason });
    }
    this.#welcome(hello.rank, { accepted: false, reason });
  }

  #welcome(rank: number, answer: { accepted: boolean; reason: string }) {
    const { transport, subjects, runId } = this.#options;
    const startStep = this.#options.startStep();
    transport.publish(
      subjects.welcome(rank),
      encodeMessage({
        kind: "welcome",
        run: runId,
        step: startStep,
        rank,
        startStep,
        session: this.#options.session,
        ...answer,
      }),
    );
  }
}
