// The peer: an Automerge Repo sync server (WebSocket + NodeFS storage) on 127.0.0.1,
// as in automerge-repo's sync-server example. Run by bench.mjs as a child process; it
// prints its port, and on an IPC message {expect: [[documentId, heads]]} it reports when
// every document is present at those heads and flushed to disk; on {progress: true} it
// answers how many are there so far and the CPU time it used.
import { Repo } from "@automerge/automerge-repo"
import { WebSocketServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { WebSocketServer } from "ws"
import os from "node:os"

const dir = process.argv[2]
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 })
const repo = new Repo({
  network: [new WebSocketServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  peerId: `peer-server-${os.hostname()}`,
  // Like the example sync server: serve what is asked, do not announce.
  sharePolicy: async () => false,
})

wss.on("listening", () => {
  process.send({ port: wss.address().port })
})

const sameHeads = (a, b) => a.length === b.length && a.every((h) => b.includes(h))

// Errors inside the repo must not kill the server mid-run. An exception is reported to the
// harness, which stops and says so; a rejected promise nobody awaits (the repo's own
// request timeouts under load) is counted and reported with the progress.
let rejections = 0
process.on("uncaughtException", (e) => {
  console.error(`peer server: ${e}`)
  process.send({ failed: String(e) })
})
process.on("unhandledRejection", (e) => {
  if (rejections++ === 0) console.error(`peer server (counted, not fatal): ${e}`)
})

// How far the current push got (answered on {progress: true}: the harness asks when it
// gives up waiting).
let progress = { done: 0, total: 0 }

process.on("message", async (msg) => {
  if (msg.progress) {
    const cpu = process.cpuUsage()
    process.send({ progress: { ...progress, rejections, cpu_s: (cpu.user + cpu.system) / 1e6 } })
  } else if (msg.expect) {
    const pending = new Map(msg.expect)
    progress = { done: 0, total: pending.size }
    while (pending.size > 0) {
      for (const [id, heads] of pending) {
        const h = repo.handles[id]
        if (h && h.isReady() && sameHeads(h.heads(), heads)) pending.delete(id)
      }
      progress.done = progress.total - pending.size
      if (pending.size > 0) await new Promise((r) => setTimeout(r, 100))
    }
    await repo.flush()
    process.send({ complete: true })
  } else if (msg.exit) {
    await repo.shutdown()
    wss.close()
    process.exit(0)
  }
})
