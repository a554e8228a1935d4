/**
 * Waits for one attempt of one step: every assigned rank's gradients, or
 * the rank's exit from the step. While waiting it keeps the step moving:
 *
 * - A rank whose heartbeat says it lacks the weights of this attempt gets
 *   them again (only the chunks it reports missing, when it has some).
 * - A rank that says it answered, but whose stream is incomplete here for
 *   `retrySeconds`, is asked for the missing chunks (`resend`).
 * - A rank silent past its heartbeat timeout is dead: dropped from the
 *   step, its examples handed back to the plan by the caller.
 * - Past `stepDeadlineSeconds`, `stragglerPolicy: "drop"` drops the late
 *   ranks the same way; `wait` logs and keeps waiting.
 * - Past `stallAbortSeconds` with live ranks still missing: `StallError`.
 *
 * Core NATS delivers at most once, so these re-requests are what makes a
 * lost chunk, a restarted server or a partitioned link cost time only.
 *
 * @module
 */
import { encodeMessage, MAX_LISTED_CHUNKS } from "../wire/mod.ts";
import type { RunSubjects, Transport } from "../transport/mod.ts";
import type { TrainConfig } from "../config.ts";
import type { Logger } from "../log.ts";
import { type GradientCollector, StallError } from "./collector.ts";
import type { Membership } from "./membership.ts";

/** A rank that left the step, and why. */
export interface LostRank {
  rank: number;
  reason: "dead" | "late";
}

/** What happened while collecting. */
export interface CollectOutcome {
  lost: LostRank[];
  resends: { weights: number; grads: number };
}

/** Options of {@linkcode collectStep}. */
export interface CollectStepOptions {
  step: number;
  attempt: number;
  runId: string;
  /** The weights stream of this attempt, to re-publish. */
  weightsChunks: Uint8Array[];
  collector: GradientCollector;
  membership: Membership;
  transport: Transport;
  subjects: RunSubjects;
  train: TrainConfig;
  log: Logger;
  /**
   * `performance.now()` when the step's first attempt began: the abort
   * threshold counts from there, so re-plans cannot postpone it forever.
   * @default now
   */
  stepStartedAt?: number;
}

/** See the module doc. */
export async function collectStep(
  options: CollectStepOptions,
): Promise<CollectOutcome> {
  const { step, attempt, collector, membership, train, log } = options;
  const started = performance.now();
  const stepStartedAt = options.stepStartedAt ?? started;
  const outcome: CollectOutcome = {
    lost: [],
    resends: { weights: 0, grads: 0 },
  };
  const retryMs = train.retrySeconds * 1000;
  const tickMs = Math.max(
    20,
    Math.min(retryMs, train.heartbeatSeconds * 1000) / 2,
  );
  let lastWeightsSend = started;
  const lastAsked = new Map<number, number>();
  let warnedAt = 0;
  let deadlineLogged = false;

  const lose = (rank: number, reason: LostRank["reason"]) => {
    collector.drop(rank);
    outcome.lost.push({ rank, reason });
  };

  while (collector.missing().length > 0) {
    await collector.changed(tickMs);
    const now = performance.now();
    const waited = (now - started) / 1000;

    for (const rank of membership.reapDead(step)) {
      if (collector.missing().includes(rank)) lose(rank, "dead");
    }

    const missing = collector.missing();
    if (missing.length === 0) break;

    // The deadline is relative to the ranks that made it: with none in
    // yet, dropping everyone would only re-plan the same step.
    const deadline = train.stepDeadlineSeconds;
    if (deadline > 0 && waited >= deadline) {
      const someoneDelivered = collector.results().length > 0;
      if (train.stragglerPolicy === "drop" && someoneDelivered) {
        log.warn(
          `step deadline of ${deadline} s passed: dropping late rank(s) ` +
            `${missing.join(", ")} from the step; their examples move to ` +
            "the next step",
          step,
        );
        for (const rank of missing) lose(rank, "late");
        break;
      }
      if (!deadlineLogged) {
        deadlineLogged = true;
        log.warn(
          `step deadline of ${deadline} s passed; waiting for rank(s) ` +
            `${missing.join(", ")} (${
              train.stragglerPolicy === "wait"
                ? 'stragglerPolicy "wait"'
                : "no rank has delivered yet"
            })`,
          step,
        );
      }
    }

    // Re-publish the weights at most once per retry interval, for every
    // rank that lacks them (a broadcast serves all of them).
    // Only a heartbeat sent after the last publication is news: one from
    // before says nothing about it, and a rank busy computing sends none.
    const lacking = missing.filter((rank) =>
      (membership.get(rank)?.lastSeen ?? 0) > lastWeightsSend &&
      lacksWeights(membership, rank, step, attempt)
    );
    if (lacking.length > 0 && now - lastWeightsSend >= retryMs) {
      lastWeightsSend = now;
      const chunks = chunksToResend(
        lacking.map((rank) => {
          const m = membership.get(rank);
          // A list about an older stream says nothing about this one.
          return m && m.step === step && m.attempt === attempt ? m.missing : [];
        }),
        options.weightsChunks.length,
      );
      for (const index of chunks) {
        options.transport.publish(
          options.subjects.weights,
          options.weightsChunks[index],
        );
      }
      outcome.resends.weights += chunks.length;
      log.debug(
        `re-sent ${chunks.length} weights chunk(s) for rank(s) ` +
          lacking.join(", "),
        step,
      );
    }

    for (const pending of collector.pending(MAX_LISTED_CHUNKS)) {
      const member = membership.get(pending.rank);
      const answered = member?.state === "answered" &&
        member.step === step && member.attempt === attempt;
      const quietFor = now - pending.lastChunkAt;
      const askedFor = now - (lastAsked.get(pending.rank) ?? 0);
      if (!answered || quietFor < retryMs || askedFor < retryMs) continue;

      lastAsked.set(pending.rank, now);
      const chunks = pending.expected === undefined
        ? []
        : pending.missingChunks;
      options.transport.publish(
        options.subjects.resend(pending.rank),
        encodeMessage({
          kind: "resend",
          run: options.runId,
          step,
          rank: pending.rank,
          attempt,
          chunks,
        }),
      );
      outcome.resends.grads += Math.max(1, chunks.length);
      log.debug(
        `asked rank ${pending.rank} for ${
          chunks.length === 0 ? "its whole stream" : `chunks ${chunks}`
        }`,
        step,
      );
    }

    if (waited - warnedAt >= train.stallWarnSeconds) {
      warnedAt = waited;
      log.warn(describeStall(collector, membership, waited), step);
    }
    if ((now - stepStartedAt) / 1000 >= train.stallAbortSeconds) {
      throw new StallError(step, missing, train.stallAbortSeconds);
    }
  }
  return outcome;
}

/** Whether `rank`'s last heartbeat says it has not got this attempt. */
function lacksWeights(
  membership: Membership,
  rank: number,
  step: number,
  attempt: number,
): boolean {
  const m = membership.get(rank);
  if (!m) return true;
  if (m.step !== step) return m.step < step;
  if (m.attempt !== attempt) return m.attempt < attempt;
  return m.state === "waiting" || m.state === "joining";
}

/**
 * The weights chunks to re-publish: the union of what the ranks reported
 * missing, or every chunk when one of them reported nothing (it has none,
 * or more missing than a heartbeat lists).
 */
function chunksToResend(reports: number[][], count: number): number[] {
  const all = Array.from({ length: count }, (_, i) => i);
  if (reports.some((r) => r.length === 0 || r.length >= MAX_LISTED_CHUNKS)) {
    return all;
  }
  const wanted = new Set(reports.flat().filter((i) => i < count));
  return all.filter((i) => wanted.has(i));
}

function describeStall(
  collector: GradientCollector,
  membership: Membership,
  waited: number,
): string {
  const parts = collector.pending(8).map((p) => {
    const m = membership.get(p.rank);
    const said = m
      ? `last heartbeat ${
        ((performance.now() - m.lastSeen) / 1000).toFixed(1)
      } s ago: ${m.state} step ${m.step}`
      : "never joined";
    const got = p.expected === undefined
      ? "no chunk yet"
      : `${p.received}/${p.expected} chunks, missing ${
        p.missingChunks.join(",")
      }${p.expected - p.received > p.missingChunks.length ? ",..." : ""}`;
    return `rank ${p.rank} (${got}; ${said})`;
  });
  return `waited ${waited.toFixed(0)} s for ${parts.join("; ")}`;
}
