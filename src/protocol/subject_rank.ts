/**
 * The check that ties a message to the per-rank subject it arrived on.
 *
 * @module
 */
import { WireError } from "../wire/mod.ts";
import type { RunSubjects } from "../transport/mod.ts";

/**
 * A per-rank subject must carry that rank's messages: NATS permissions tie
 * credentials to subjects, so the subject is what the sender proved.
 */
export function checkSubjectRank(
  runSubjects: RunSubjects,
  subject: string,
  message: { rank: number; kind: string; run: string; step: number },
): void {
  const rank = runSubjects.rankOf(subject);
  if (rank !== message.rank) {
    throw new WireError({
      reason: "bad_rank",
      field: "rank",
      message: `${message.kind} of rank ${message.rank} arrived on ` +
        `${subject}, which belongs to ${
          rank === null ? "no rank" : `rank ${rank}`
        }`,
      kind: message.kind,
      run: message.run,
      step: message.step,
      rank: message.rank,
    });
  }
}
