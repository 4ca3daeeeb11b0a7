#!/usr/bin/env node
// Conformance driver: Cursor's own client (@cursor/sdk, pinned in package.json) against a
// simulated backend (cursor-sim). See README.md.
//
//   node run.mjs [text|resume|quota ...]        (no argument: all three, in that order)
//
// Environment:
//   CURSOR_BACKEND_URL         required: the backend, e.g. http://127.0.0.1:PORT. The SDK reads
//                              it once, at load; with http:// it uses HTTP/1.1 RunSSE+BidiAppend
//                              unless GetServerConfig tells it to use HTTP/2 (h2c Run).
//   CURSOR_API_KEY             required: an API key the backend accepts, with quota left.
//   CURSOR_SIM_QUOTA_API_KEY   for `quota`: an API key whose quota allows one run at most.
//   SDK_CONFORMANCE_MODEL      model id to select (default "default").
//   SDK_CONFORMANCE_TIMEOUT_MS bound on each scenario (default 60000).
//   SDK_CONFORMANCE_KEEP_HOME  "1": keep the caller's HOME instead of a private temporary one.
//
// Output: one JSON object per scenario on stdout, one per line:
//   {"scenario","ok","ms","checks":[{"name","ok","detail"?}],"turns":[…],"error"?}
// Anything the SDK itself prints goes to stderr. Exit status: 0 when every scenario passed,
// 1 when one failed, 2 on a usage error.

import fs from "node:fs";
import { register } from "node:module";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";

const SCENARIOS = ["text", "resume", "quota"];

// stdout carries only our JSON lines: route the SDK's console output to stderr.
const writeResult = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
for (const level of ["log", "info", "debug", "warn"]) {
  console[level] = (...args) => console.error(...args);
}

function usage(message) {
  process.stderr.write(`run.mjs: ${message}\nusage: node run.mjs [${SCENARIOS.join("|")} ...]\n`);
  process.exit(2);
}

const wanted = process.argv.slice(2);
for (const s of wanted) {
  if (!SCENARIOS.includes(s)) usage(`unknown scenario ${JSON.stringify(s)}`);
}
const scenarios = wanted.length > 0 ? wanted : SCENARIOS;
const backend = process.env.CURSOR_BACKEND_URL;
const apiKey = process.env.CURSOR_API_KEY;
if (!backend) usage("CURSOR_BACKEND_URL is not set");
if (!apiKey) usage("CURSOR_API_KEY is not set");
const quotaKey = process.env.CURSOR_SIM_QUOTA_API_KEY;
if (scenarios.includes("quota") && !quotaKey) usage("CURSOR_SIM_QUOTA_API_KEY is not set (quota)");
const modelId = process.env.SDK_CONFORMANCE_MODEL || "default";
const timeoutMs = Number(process.env.SDK_CONFORMANCE_TIMEOUT_MS || 60000);

// A private scratch root: the SDK's home (settings, caches), workspaces and agent stores.
const root = fs.mkdtempSync(path.join(os.tmpdir(), "cursorpool-sdk-"));
process.on("exit", () => fs.rmSync(root, { recursive: true, force: true }));
if (process.env.SDK_CONFORMANCE_KEEP_HOME !== "1") {
  const home = path.join(root, "home");
  fs.mkdirSync(home);
  process.env.HOME = home;
  process.env.USERPROFILE = home;
  for (const [name, sub] of [
    ["XDG_CONFIG_HOME", ".config"],
    ["XDG_DATA_HOME", ".local/share"],
    ["XDG_STATE_HOME", ".local/state"],
    ["XDG_CACHE_HOME", ".cache"],
  ]) {
    process.env[name] = path.join(home, sub);
  }
}

// The SDK loads sqlite3 (a native addon whose install script is skipped) for its default store;
// every agent here uses the SDK's JSONL store, so `sqlite3` resolves to a stub (lib/).
register("./lib/hooks.mjs", import.meta.url);
// Imported only now: the SDK reads its environment when it loads.
const sdk = await import("@cursor/sdk");
const { Agent, JsonlLocalAgentStore, RateLimitError, convertConnectError } = sdk;

/** A fresh workspace directory and JSONL agent store (no sqlite needed). */
function scratch(name) {
  const dir = fs.mkdtempSync(path.join(root, `${name}-`));
  const cwd = path.join(dir, "work");
  const storeDir = path.join(dir, "store");
  fs.mkdirSync(cwd);
  fs.mkdirSync(storeDir);
  return { cwd, storeDir, store: new JsonlLocalAgentStore(storeDir) };
}

class Checks {
  constructor() {
    this.list = [];
  }
  /** Records a check; returns its outcome. */
  that(name, ok, detail) {
    const entry = { name, ok: Boolean(ok) };
    if (detail !== undefined) entry.detail = detail;
    this.list.push(entry);
    return entry.ok;
  }
  get ok() {
    return this.list.length > 0 && this.list.every((c) => c.ok);
  }
}

/**
 * Sends `text` on `agent` and follows the run to its end: the streamed messages, the result of
 * `run.wait()`, the run's row in the store and, when the run failed, the error the SDK ended
 * it with (the rejection of the run's internal completion promise; `run.wait()` itself never
 * throws).
 */
async function turn(agent, store, text) {
  const run = await agent.send(text);
  let failure = null;
  const done = run.controller?.done;
  if (done && typeof done.catch === "function") {
    done.catch((e) => {
      failure = e;
    });
  }
  let streamed = "";
  const statuses = [];
  for await (const m of run.stream()) {
    if (m.type === "assistant") {
      for (const block of m.message?.content ?? []) {
        if (block.type === "text") streamed += block.text;
      }
    } else if (m.type === "status") {
      statuses.push(m.status);
    }
  }
  const result = await run.wait();
  // Let a rejection already queued reach the handler above.
  await new Promise((resolve) => setImmediate(resolve));
  const doc = await store.runs.get({ agentId: agent.agentId, runId: run.id });
  const agentDoc = await store.agents.get({ agentId: agent.agentId });
  return {
    text,
    runId: run.id,
    requestId: result.requestId ?? null,
    status: result.status,
    result: result.result ?? null,
    streamed,
    statuses,
    storedError: doc?.error ?? null,
    startCheckpoint: doc?.startCheckpointRef?.rootBlobId ?? null,
    latestCheckpoint: doc?.latestCheckpointRef?.rootBlobId ?? null,
    agentCheckpoint: agentDoc?.latestCheckpoint?.rootBlobId ?? null,
    failure: failure ? describeFailure(failure) : null,
  };
}

/** What the SDK says about the error a run failed with. */
function describeFailure(e) {
  const out = {
    name: e?.name ?? null,
    message: e?.message ?? String(e),
    title: e?.displayInfo?.title ?? null,
    action: e?.action ?? null,
    cursorError: e?.displayInfo?.errorDetails?.error ?? null,
    connectCode: null,
    classifiedAs: null,
    classifiedMessage: null,
    retryable: null,
  };
  // The transport error underneath (a ConnectError), classified by the SDK's own public
  // converter: resource_exhausted + a usage-limit ErrorDetails must give RateLimitError.
  const cause = e?.cause;
  if (cause && typeof cause.findDetails === "function") {
    out.connectCode = cause.code ?? null;
    const converted = convertConnectError(cause);
    out.classifiedAs = converted instanceof RateLimitError ? "RateLimitError" : converted?.name;
    out.classifiedMessage = converted?.message ?? null;
    out.retryable = converted?.isRetryable ?? null;
  }
  return out;
}

function newAgent(key, ws) {
  return Agent.create({
    apiKey: key,
    model: { id: modelId },
    local: { cwd: ws.cwd, store: ws.store },
  });
}

/** How the sim's answer lists earlier user messages. */
function previousLine(texts) {
  return `previous user messages: [${texts.map((t) => JSON.stringify(t)).join(", ")}]`;
}

/** The first line of the sim's deterministic answer for a conversation of `users` turns. */
function firstLine(users, text) {
  return `user turns: ${users}; tool results: 0; last user message: ${JSON.stringify(text)}`;
}

function checkFinished(c, label, t) {
  c.that(`${label}: run finished`, t.status === "finished", t.status);
  c.that(`${label}: streamed text equals the result`, t.streamed === t.result && t.streamed !== "");
  c.that(`${label}: FINISHED status streamed`, t.statuses.includes("FINISHED"), t.statuses);
  c.that(`${label}: a checkpoint was stored`, t.latestCheckpoint !== null && t.agentCheckpoint === t.latestCheckpoint);
}

const nonce = Math.random().toString(36).slice(2, 8);

const SCENARIO_FNS = {
  /** One plain text turn on a new agent. */
  async text(c, turns) {
    const ws = scratch("text");
    const agent = await newAgent(apiKey, ws);
    try {
      const t = await turn(agent, ws.store, `conformance text turn ${nonce}`);
      turns.push(t);
      checkFinished(c, "turn 1", t);
      c.that("turn 1: the backend saw the message", (t.result ?? "").startsWith(firstLine(1, t.text)), t.result);
      c.that("turn 1: no earlier history", !(t.result ?? "").includes("previous user messages"));
      c.that("turn 1: started from no checkpoint", t.startCheckpoint === null, t.startCheckpoint);
    } finally {
      agent.close();
    }
  },

  /**
   * Two turns on one agent (the second resumes from the first one's checkpoint), then a third
   * on an agent object resumed from the store, so the persisted checkpoint is what is replayed.
   */
  async resume(c, turns) {
    const ws = scratch("resume");
    const agent = await newAgent(apiKey, ws);
    const p1 = `first question ${nonce}`;
    const p2 = `follow-up question ${nonce}`;
    const p3 = `question after Agent.resume ${nonce}`;
    try {
      const t1 = await turn(agent, ws.store, p1);
      turns.push(t1);
      checkFinished(c, "turn 1", t1);
      const t2 = await turn(agent, ws.store, p2);
      turns.push(t2);
      checkFinished(c, "turn 2", t2);
      c.that("turn 2: started from turn 1's checkpoint", t2.startCheckpoint !== null && t2.startCheckpoint === t1.latestCheckpoint, { start: t2.startCheckpoint, previous: t1.latestCheckpoint });
      c.that("turn 2: the backend saw both turns", (t2.result ?? "").startsWith(firstLine(2, p2)), t2.result);
      c.that("turn 2: turn 1 reached the backend through the checkpoint", (t2.result ?? "").includes(previousLine([p1])), t2.result);
    } finally {
      agent.close();
    }
    const reopened = { ...ws, store: new JsonlLocalAgentStore(ws.storeDir) };
    const again = await Agent.resume(agent.agentId, {
      apiKey,
      model: { id: modelId },
      local: { cwd: ws.cwd, store: reopened.store },
    });
    try {
      const t3 = await turn(again, reopened.store, p3);
      turns.push(t3);
      checkFinished(c, "turn 3", t3);
      c.that("turn 3: started from turn 2's stored checkpoint", t3.startCheckpoint !== null && t3.startCheckpoint === turns[1].latestCheckpoint, { start: t3.startCheckpoint, previous: turns[1].latestCheckpoint });
      c.that("turn 3: the backend saw all three turns", (t3.result ?? "").startsWith(firstLine(3, p3)) && (t3.result ?? "").includes(previousLine([p1, p2])), t3.result);
    } finally {
      again.close();
    }
  },

  /**
   * Turns on an account whose quota allows one run: the first finishes (unless the quota is
   * already spent), the next fails with the usage limit, which the SDK must report as such.
   */
  async quota(c, turns) {
    const ws = scratch("quota");
    const agent = await newAgent(quotaKey, ws);
    try {
      for (let i = 1; i <= 2; i++) {
        const t = await turn(agent, ws.store, `quota turn ${i} ${nonce}`);
        turns.push(t);
        if (t.status !== "finished") break;
      }
      const failed = turns[turns.length - 1];
      const before = turns.slice(0, -1);
      c.that("turns before the limit finished", before.every((t) => t.status === "finished"), before.map((t) => t.status));
      c.that("the turn past the quota ended in error", failed.status === "error", failed.status);
      c.that("it streamed no answer", failed.streamed === "", failed.streamed);
      c.that("the SDK stored the usage-limit message", /^Usage limit\b/.test(failed.storedError ?? ""), failed.storedError);
      const f = failed.failure ?? {};
      c.that("the run failed with the usage-limit title", f.title === "Usage limit", f.title);
      // aiserver.v1.ErrorDetails.Error: 10 = ERROR_PRO_USER_USAGE_LIMIT.
      c.that("the SDK reads ERROR_PRO_USER_USAGE_LIMIT", [10, "ERROR_PRO_USER_USAGE_LIMIT"].includes(f.cursorError), f.cursorError);
      c.that("the SDK classifies it as RateLimitError", f.classifiedAs === "RateLimitError", f.classifiedAs);
      c.that("classified message is title + detail", /^Usage limit \S/.test(f.classifiedMessage ?? ""), f.classifiedMessage);
      c.that("classified as not retryable", f.retryable === false, f.retryable);
      c.that("no checkpoint from the failed turn", failed.latestCheckpoint === null || failed.latestCheckpoint === (before.at(-1)?.latestCheckpoint ?? null), failed.latestCheckpoint);
    } finally {
      agent.close();
    }
  },
};

function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

let failures = 0;
for (const name of scenarios) {
  const c = new Checks();
  const turns = [];
  const started = performance.now();
  const out = { scenario: name, ok: false, ms: 0, checks: c.list, turns };
  try {
    await withTimeout(SCENARIO_FNS[name](c, turns), timeoutMs, `scenario ${name}`);
  } catch (e) {
    out.error = `${e?.name ?? "Error"}: ${e?.message ?? String(e)}`;
  }
  out.ok = out.error === undefined && c.ok;
  out.ms = Math.round(performance.now() - started);
  if (!out.ok) failures += 1;
  writeResult(out);
}

// The SDK keeps sockets and timers (analytics, keep-alive) that would hold the process open.
process.exit(failures === 0 ? 0 : 1);
