import assert from "node:assert/strict";
import {
  checkSubject,
  subjectMatches,
  subjects,
} from "../src/transport/mod.ts";

Deno.test("subjects - one prefix per run", () => {
  const run = subjects("dptrain", "job-1");

  assert.equal(run.hello(1), "dptrain.job-1.hello.1");
  assert.equal(run.helloAll, "dptrain.job-1.hello.*");
  assert.equal(run.welcome(2), "dptrain.job-1.welcome.2");
  assert.equal(run.resend(2), "dptrain.job-1.resend.2");
  assert.equal(run.weights, "dptrain.job-1.weights");
  assert.equal(run.grads(0), "dptrain.job-1.grads.0");
  assert.equal(run.gradsAll, "dptrain.job-1.grads.*");
  assert.equal(run.control, "dptrain.job-1.control");
  assert.equal(run.all, "dptrain.job-1.>");
  assert.equal(subjects("lab.team_a", "r2").grads(3), "lab.team_a.r2.grads.3");
});

Deno.test("subjects - rankOf reads the rank of per-rank subjects only", () => {
  const run = subjects("dptrain", "job-1");

  assert.equal(run.rankOf(run.grads(12)), 12);
  assert.equal(run.rankOf(run.hello(0)), 0);
  assert.equal(run.rankOf(run.weights), null);
  assert.equal(run.rankOf("dptrain.job-1.grads.01"), null);
  assert.equal(run.rankOf("dptrain.job-2.grads.1"), null);
  assert.equal(run.rankOf("dptrain.job-1.grads.1.x"), null);
  assert.ok(subjectMatches(run.gradsAll, run.grads(5)));
  assert.ok(subjectMatches(run.helloAll, run.hello(5)));
});

Deno.test("subjects - two runs share no subject and match none of each other's", () => {
  const a = subjects("dptrain", "a");
  const b = subjects("dptrain", "b");
  const subjectsOf = (
    run: typeof a,
  ) => [
    run.hello(0),
    run.welcome(0),
    run.resend(0),
    run.weights,
    run.grads(0),
    run.control,
  ];

  for (const subject of subjectsOf(a)) {
    assert.ok(subjectMatches(a.all, subject));
    assert.ok(!subjectMatches(b.all, subject));
  }
  for (const subject of subjectsOf(b)) {
    assert.ok(!subjectMatches(a.all, subject));
  }
});

Deno.test("subjects - run ids and prefixes must be token-safe", () => {
  for (const runId of ["", "a.b", "a*", "a>", "a b", "x".repeat(65), "é"]) {
    assert.throws(() => subjects("dptrain", runId), RangeError, runId);
  }
  for (const prefix of ["", "a..b", "a.*", "a b", ".a"]) {
    assert.throws(() => subjects(prefix, "r"), RangeError, prefix);
  }
  assert.throws(() => subjects("p", "r").welcome(-1), RangeError);
  assert.throws(() => subjects("p", "r").welcome(1.5), RangeError);
});

Deno.test("subjectMatches - follows NATS wildcard rules", () => {
  assert.ok(subjectMatches("a.b", "a.b"));
  assert.ok(!subjectMatches("a.b", "a.b.c"));
  assert.ok(subjectMatches("a.*.c", "a.x.c"));
  assert.ok(!subjectMatches("a.*", "a.x.c"));
  assert.ok(subjectMatches("a.>", "a.x.c"));
  assert.ok(!subjectMatches("a.>", "a"));
  assert.ok(subjectMatches(">", "a"));
});

Deno.test("checkSubject - accepts wildcards only where subscriptions allow them", () => {
  checkSubject("a.b-c_d", { wildcards: false });
  checkSubject("a.*.>", { wildcards: true });
  for (const subject of ["a.*", "a.>", "", "a..b", "a b"]) {
    assert.throws(() => checkSubject(subject, { wildcards: false }), TypeError);
  }
  for (const subject of ["a.>.b", "", "a.b."]) {
    assert.throws(() => checkSubject(subject, { wildcards: true }), TypeError);
  }
});
