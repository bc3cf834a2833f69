// Peer comparison (issue 7): push the same visit documents fieldsync's bench exported
// (VisitDoc::save bytes, one file each) into an Automerge Repo sync server on 127.0.0.1,
// then pull them all into a fresh client. Prints JSON.
//
//   node bench.mjs <export dir>/visits-1000 [<export dir>/visits-10000 ...]
//
// PEER_TIMEOUT_S (600) bounds each push and each pull: past it the run of that size stops
// and reports how far it got (`unfinished`). PEER_PUSHERS (100), PEER_FIND_CONCURRENCY
// (256).
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { fork } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"

// Automerge Repo logs to stdout ("error waiting for … to be in one of states"); stdout
// carries only the JSON result.
const printResult = (text) => process.stdout.write(text + "\n")
console.log = (...args) => console.error(...args)

const CONCURRENCY = Number(process.env.PEER_FIND_CONCURRENCY || 256)
// Longest wait for a push or a pull of one size before the harness gives up and reports
// how far it got (the peer's 10,000-document push did not finish in 18 minutes once).
const TIMEOUT_S = Number(process.env.PEER_TIMEOUT_S || 600)

/// Resolves to the promise's value, or to `undefined` once `deadline` (performance.now()
/// milliseconds) has passed.
function bounded(promise, deadline) {
  let timer
  const timeout = new Promise((r) => {
    timer = setTimeout(() => r(undefined), Math.max(0, deadline - performance.now()))
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// Errors the client repos raise outside any await: an exception (a WebSocket reset) stops
// the run of that size, which reports it instead of the process dying without a result; a
// rejected promise nobody awaits (a document a repo gave up on) is logged, and whatever
// then waits for it is cut off by the time bound.
let clientError = null
process.on("uncaughtException", (e) => {
  console.error(`peer client: ${e}`)
  clientError = clientError || String(e)
})
process.on("unhandledRejection", (e) => console.error(`peer client (ignored): ${e}`))

/// Resolves (to `undefined`) when `child` exits or reports a failure, or the client raised
/// an error; `reason()` says which.
function trouble(child) {
  let why = null
  const p = new Promise((resolve) => {
    child.once("exit", (code) => {
      why = why || `the peer server exited (code ${code})`
      resolve(undefined)
    })
    child.on("message", (m) => {
      if (m.failed) {
        why = why || `the peer server failed: ${m.failed}`
        resolve(undefined)
      }
    })
    const poll = setInterval(() => {
      if (clientError) {
        clearInterval(poll)
        why = why || `a client repo failed: ${clientError}`
        resolve(undefined)
      }
    }, 200)
    child.once("exit", () => clearInterval(poll))
  })
  return { p, reason: () => why }
}

function cpuSeconds() {
  const c = process.cpuUsage()
  return (c.user + c.system) / 1e6
}

function startServer(storageDir) {
  const child = fork(new URL("./server.mjs", import.meta.url).pathname, [storageDir], {
    // The server's stdout goes to our stderr: stdout carries only the JSON result.
    stdio: ["ignore", 2, "inherit", "ipc"],
  })
  return new Promise((resolve) => {
    child.once("message", (m) => resolve({ child, port: m.port }))
  })
}

function waitFor(child, key) {
  return new Promise((resolve) => {
    const on = (m) => {
      if (m[key]) {
        child.off("message", on)
        resolve(m)
      }
    }
    child.on("message", on)
  })
}

async function connected(repo) {
  // Wait until the WebSocket peer is there.
  while (repo.peers.length === 0) await new Promise((r) => setTimeout(r, 10))
}

function dirSize(dir) {
  let total = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    total += e.isDirectory() ? dirSize(p) : fs.statSync(p).size
  }
  return total
}

async function benchOne(docsDir) {
  const files = fs.readdirSync(docsDir).filter((f) => f.endsWith(".automerge")).sort()
  const blobs = files.map((f) => new Uint8Array(fs.readFileSync(path.join(docsDir, f))))
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), "peer-server-"))
  const { child, port } = await startServer(storage)
  const url = `ws://127.0.0.1:${port}`
  clientError = null
  const failure = trouble(child)

  // Push: PEER_PUSHERS client repos (like our 100 devices; one repo importing 10,000
  // documents spends minutes of CPU in the client before the server sees any), each
  // importing its share; done when the server holds every document at the same heads and
  // has flushed them to disk.
  const nPushers = Math.min(Number(process.env.PEER_PUSHERS || 100), blobs.length)
  const pushers = []
  for (let i = 0; i < nPushers; i++) {
    const r = new Repo({ network: [new WebSocketClientAdapter(url)], peerId: `pusher-${i}` })
    await connected(r)
    pushers.push(r)
  }
  const t0 = performance.now()
  const deadline = t0 + TIMEOUT_S * 1000
  const expect = []
  // Importing is synchronous and costly in the client: yield to the event loop now and
  // then (the repos sync meanwhile) and stop importing at the deadline.
  for (let i = 0; i < blobs.length && performance.now() < deadline; i++) {
    const h = pushers[i % nPushers].import(blobs[i])
    expect.push([h.documentId, h.heads()])
    if (i % 50 === 49) await new Promise((r) => setImmediate(r))
  }
  const done = waitFor(child, "complete")
  child.send({ expect })
  if (
    expect.length < blobs.length ||
    (await bounded(Promise.race([done, failure.p]), deadline)) === undefined
  ) {
    // Gave up: how many documents the server holds, and who spent the CPU.
    const why = failure.reason() || `push did not finish in ${TIMEOUT_S} s`
    const answer = waitFor(child, "progress")
    if (child.connected) child.send({ progress: true })
    const progress = (await bounded(answer, performance.now() + 5000))?.progress || {
      done: NaN,
      total: expect.length,
      cpu_s: NaN,
    }
    const elapsed = (performance.now() - t0) / 1000
    child.kill("SIGKILL")
    fs.rmSync(storage, { recursive: true, force: true })
    return {
      docs: blobs.length,
      unfinished:
        `${why} (stopped at ${elapsed.toFixed(0)} s): the client repos had imported ` +
        `${expect.length} of ${blobs.length} documents, the server held ${progress.done} of them ` +
        `(${(progress.done / elapsed).toFixed(1)} docs/s); the pushing Node process had used ${cpuSeconds().toFixed(0)} CPU-s, ` +
        `the peer server ${progress.cpu_s.toFixed(0)} CPU-s` +
        (progress.rejections ? ` and logged ${progress.rejections} internal request timeouts` : ""),
      push_reached: progress.done,
      push_s: elapsed,
      pushers: nPushers,
    }
  }
  const pushMs = performance.now() - t0
  // Shutting the client repos down can hang under load: bounded too.
  await bounded(Promise.all(pushers.map((r) => r.shutdown())), performance.now() + 30_000)

  // Pull: a fresh client (no storage) finds every document by id.
  const puller = new Repo({ network: [new WebSocketClientAdapter(url)], peerId: "puller" })
  await connected(puller)
  const t1 = performance.now()
  let next = 0
  let bad = 0
  let unavailable = 0
  let pulled = 0
  const worker = async () => {
    while (next < expect.length) {
      const [id, heads] = expect[next++]
      let h
      try {
        h = await puller.find(id)
      } catch {
        // The repo gave up on it ("unavailable"): counted, not fatal.
        unavailable++
        continue
      }
      const got = h.heads()
      if (got.length !== heads.length || !got.every((x) => heads.includes(x))) bad++
      pulled++
    }
  }
  const pulledAll = await bounded(
    Promise.race([Promise.all(Array.from({ length: CONCURRENCY }, worker)), failure.p]),
    t1 + TIMEOUT_S * 1000,
  )
  const pullMs = performance.now() - t1
  if (pulledAll === undefined) {
    const why = failure.reason() || `the pull did not finish in ${TIMEOUT_S} s`
    child.kill("SIGKILL")
    fs.rmSync(storage, { recursive: true, force: true })
    return {
      docs: blobs.length,
      push_s: pushMs / 1000,
      push_docs_per_s: blobs.length / (pushMs / 1000),
      unfinished:
        `pushed at ${(blobs.length / (pushMs / 1000)).toFixed(1)} docs/s; ${why} ` +
        `(${pulled} of ${blobs.length} documents pulled, ${(pulled / (pullMs / 1000)).toFixed(1)} docs/s)`,
      pull_reached: pulled,
      pushers: nPushers,
    }
  }
  await bounded(puller.shutdown(), performance.now() + 30_000)
  child.send({ exit: true })
  if ((await bounded(new Promise((r) => child.once("exit", r)), performance.now() + 30_000)) === undefined) {
    child.kill("SIGKILL")
  }
  const storageBytes = dirSize(storage)
  fs.rmSync(storage, { recursive: true, force: true })
  return {
    docs: blobs.length,
    doc_bytes: blobs.reduce((n, b) => n + b.length, 0),
    push_s: pushMs / 1000,
    push_docs_per_s: blobs.length / (pushMs / 1000),
    pull_s: pullMs / 1000,
    // Only the documents the peer delivered count (those it gave up on do not).
    pull_docs_per_s: pulled / (pullMs / 1000),
    pull_delivered: pulled,
    pull_mismatched: bad,
    pull_unavailable: unavailable,
    pushers: nPushers,
    pull_concurrency: CONCURRENCY,
    server_storage_bytes: storageBytes,
    server_storage_per_doc: storageBytes / blobs.length,
  }
}

const results = {}
for (const dir of process.argv.slice(2)) {
  const r = await benchOne(dir)
  if (r.unfinished) console.error(`peer ${path.basename(dir)}: ${r.unfinished}`)
  else console.error(`peer ${path.basename(dir)}: push ${r.push_docs_per_s.toFixed(0)} docs/s, pull ${r.pull_docs_per_s.toFixed(0)} docs/s`)
  results[r.docs] = r
}
printResult(JSON.stringify({ node: process.version, results }, null, 2))
process.exit(0)
