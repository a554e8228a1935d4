import assert from "node:assert/strict";
import {
  checkSubject,
  subjectMatches,
  subjects,
} from "../src/transport/mod.ts";

Deno.test("subjects - one prefix per run", () => {
  const run = subjects("dptrain", "job-1");

  assert.equal(run.hello, "dptrain.job-1.hello");
  assert.equal(run.welcome(2), "dptrain.job-1.welcome.2");
  assert.equal(run.weights, "dptrain.job-1.weights");
  assert.equal(run.grads, "dptrain.job-1.grads");
  assert.equal(run.control, "dptrain.job-1.control");
  assert.equal(run.all, "dptrain.job-1.>");
  assert.equal(subjects("lab.team_a", "r2").grads, "lab.team_a.r2.grads");
});

Deno.test("subjects - two runs share no subject and match none of each other's", () => {
  const a = subjects("dptrain", "a");
  const b = subjects("dptrain", "b");
  const subjectsOf = (
    run: typeof a,
  ) => [run.hello, run.welcome(0), run.weights, run.grads, run.control];

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
