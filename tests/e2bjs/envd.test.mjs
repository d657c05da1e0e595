// The SDK conformance items of docs/envd.md, driven by the
// unmodified e2b SDK 2.51.0 in debug mode against envd on localhost:49983.
// Run by e2bjs_test.go, which creates the test user and starts envd; it
// passes WRENN_TEST_USER, WRENN_TEST_DIR (a scratch directory) and ENVD_PID.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import {
  Sandbox,
  CommandExitError,
  InvalidArgumentError,
  AuthenticationError,
  FileNotFoundError,
  FileType,
  FilesystemEventType,
} from 'e2b'

const ENVD = 'http://localhost:49983'
const USER = required('WRENN_TEST_USER')
const HOME = `/home/${USER}`
const DIR = required('WRENN_TEST_DIR')
const ENVD_PID = Number(required('ENVD_PID'))

function required(name) {
  const v = process.env[name]
  if (!v) throw new Error(`${name} must be set (run through e2bjs_test.go)`)
  return v
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function eventually(what, ms, cond) {
  const deadline = Date.now() + ms
  for (;;) {
    if (await cond()) return
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`)
    await sleep(50)
  }
}

function peakRSS(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB/m)
  return Number(m[1]) * 1024
}

let sbx

before(async () => {
  const res = await fetch(`${ENVD}/init`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ defaultUser: USER, envVars: { WRN_INIT: 'from-init', WRN_SHADOW: 'init' } }),
  })
  assert.equal(res.status, 204, 'POST /init')
  sbx = await Sandbox.create()
  assert.equal(sbx.sandboxId, 'debug_sandbox_id', 'SDK is in debug mode')
})

after(async () => {
  // Nothing may keep running once the suite is done.
  for (const p of await sbx.commands.list()) await sbx.commands.kill(p.pid)
})

// 1
test('1 run echo hello', async () => {
  const r = await sbx.commands.run('echo hello')
  assert.equal(r.stdout, 'hello\n')
  assert.equal(r.exitCode, 0)
})

// 2
test('2 non-zero exit throws CommandExitError', async () => {
  await assert.rejects(sbx.commands.run('echo err >&2; exit 3'), (err) => {
    assert.ok(err instanceof CommandExitError, `got ${err}`)
    assert.equal(err.exitCode, 3)
    assert.equal(err.error, 'exit status 3')
    assert.equal(err.stderr, 'err\n')
    return true
  })
})

// 3
test('3 cwd, envs and user', async () => {
  const r = await sbx.commands.run('pwd; echo $X; whoami', { cwd: DIR, envs: { X: '1' }, user: 'root' })
  assert.equal(r.stdout, `${DIR}\n1\nroot\n`)
})

// 4
test('4 default user from /init, home-relative cwd', async () => {
  const r = await sbx.commands.run('whoami; echo $HOME; pwd; mkdir -p ~/sub')
  assert.equal(r.stdout, `${USER}\n${HOME}\n${HOME}\n`)
  for (const cwd of ['sub', '~/sub']) {
    const r = await sbx.commands.run('pwd', { cwd })
    assert.equal(r.stdout, `${HOME}/sub\n`, `cwd ${cwd}`)
  }
})

// 5
test('5 missing cwd and unknown user', async () => {
  await assert.rejects(sbx.commands.run('true', { cwd: `${DIR}/missing` }), InvalidArgumentError)
  await assert.rejects(sbx.commands.run('true', { user: 'no-such-user-wrn' }), AuthenticationError)
})

// 6
test('6 /init variables and per-command override', async () => {
  const r = await sbx.commands.run('echo $WRN_INIT $WRN_SHADOW', { envs: { WRN_SHADOW: 'cmd' } })
  assert.equal(r.stdout, 'from-init cmd\n')
})

// 7
test('7 background + connect sees only later output', async () => {
  let early = false
  const h = await sbx.commands.run('echo early; sleep 3; echo done', {
    background: true,
    onStdout: (d) => { if (d.includes('early')) early = true },
  })
  await eventually('early output', 3000, () => early)
  await h.disconnect()
  const c = await sbx.commands.connect(h.pid)
  const r = await c.wait()
  assert.equal(r.stdout, 'done\n')
  assert.equal(r.exitCode, 0)
})

// 8
test('8 list shows the process, then not', async () => {
  const h = await sbx.commands.run('sleep 1', { background: true })
  const p = (await sbx.commands.list()).find((p) => p.pid === h.pid)
  assert.ok(p, 'listed')
  assert.equal(p.cmd, '/bin/bash')
  assert.deepEqual(p.args, ['-l', '-c', 'sleep 1'])
  await h.wait()
  await eventually('gone from list', 2000, async () => !(await sbx.commands.list()).some((p) => p.pid === h.pid))
})

// 9
test('9 kill', async () => {
  const h = await sbx.commands.run('sleep 30', { background: true })
  assert.equal(await sbx.commands.kill(h.pid), true)
  await assert.rejects(h.wait(), (err) => {
    assert.ok(err instanceof CommandExitError, `got ${err}`)
    assert.equal(err.exitCode, -1)
    assert.equal(err.error, 'signal: killed')
    return true
  })
  assert.equal(await sbx.commands.kill(h.pid), false)
})

// 10
test('10 timeoutMs bounds the lifetime', async () => {
  const h = await sbx.commands.run('sleep 30', { background: true, timeoutMs: 2000 })
  assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid))
  const t0 = Date.now()
  await eventually('killed after timeoutMs', 5000, async () => !(await sbx.commands.list()).some((p) => p.pid === h.pid))
  assert.ok(Date.now() - t0 > 1000, 'killed too early')
  await h.wait().catch(() => {})
})

// 11
test('11 timeoutMs 0 outlives disconnect', async () => {
  const h = await sbx.commands.run('sleep 30; echo late', { background: true, timeoutMs: 0 })
  await h.disconnect()
  await sleep(5000)
  assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid), 'still listed 5 s later')
  const c = await sbx.commands.connect(h.pid, { timeoutMs: 0 })
  assert.equal(c.pid, h.pid)
  assert.equal(await sbx.commands.kill(h.pid), true)
  await c.wait().catch(() => {})
})

// 12
test('12 stdin', async () => {
  const h = await sbx.commands.run('cat', { background: true, stdin: true })
  await sbx.commands.sendStdin(h.pid, 'hi\n')
  await sbx.commands.closeStdin(h.pid)
  const r = await h.wait()
  assert.equal(r.stdout, 'hi\n')
})

// 13
test('13 stdin off by default', async () => {
  const t0 = Date.now()
  const r = await sbx.commands.run('cat')
  assert.equal(r.stdout, '')
  assert.ok(Date.now() - t0 < 5000)
  const h = await sbx.commands.run('sleep 10', { background: true })
  await assert.rejects(sbx.commands.sendStdin(h.pid, 'x'))
  await sbx.commands.kill(h.pid)
  await h.wait().catch(() => {})
})

function ptyOutput() {
  const o = { text: '' }
  const dec = new TextDecoder()
  o.onData = (d) => { o.text += dec.decode(d, { stream: true }) }
  o.waitFor = (s) => eventually(`PTY output ${JSON.stringify(s)} (have ${JSON.stringify(o.text.slice(-200))})`, 10000, () => o.text.includes(s))
  return o
}

// 14
test('14 pty size and resize', async () => {
  const out = ptyOutput()
  const h = await sbx.pty.create({ cols: 80, rows: 24, onData: out.onData })
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('stty size\n'))
  await out.waitFor('24 80')
  await sbx.pty.resize(h.pid, { cols: 100, rows: 30 })
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('stty size\n'))
  await out.waitFor('30 100')
  assert.equal(await sbx.pty.kill(h.pid), true)
  await h.wait().catch(() => {})
})

// 15
test('15 pty onData only, kill, connect after disconnect', async () => {
  const out = ptyOutput()
  const h = await sbx.pty.create({ cols: 80, rows: 24, onData: out.onData, timeoutMs: 0 })
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('echo one-$((1+1))\n'))
  await out.waitFor('one-2')
  assert.equal(h.stdout, '')
  assert.equal(h.stderr, '')
  await h.disconnect()
  const out2 = ptyOutput()
  const c = await sbx.pty.connect(h.pid, { onData: out2.onData })
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('echo two-$((1+2))\n'))
  await out2.waitFor('two-3')
  assert.ok(!out2.text.includes('one-2'), 'connect replayed old output')
  assert.equal(await sbx.pty.kill(h.pid), true)
  await assert.rejects(c.wait(), CommandExitError)
})

function envelope(obj) {
  const payload = Buffer.from(JSON.stringify(obj))
  const head = Buffer.alloc(5)
  head.writeUInt32BE(payload.length, 1)
  return Buffer.concat([head, payload])
}

function frames(buf) {
  const out = []
  for (let i = 0; i + 5 <= buf.length;) {
    const n = buf.readUInt32BE(i + 1)
    if (i + 5 + n > buf.length) break // incomplete: more bytes to come
    out.push({ flags: buf[i], json: JSON.parse(buf.subarray(i + 5, i + 5 + n).toString()) })
    i += 5 + n
  }
  return out
}

// 16
test('16 keepalive every second', async () => {
  const h = await sbx.commands.run('sleep 10', { background: true })
  const ac = new AbortController()
  const res = await fetch(`${ENVD}/process.Process/Connect`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/connect+json', 'Keepalive-Ping-Interval': '1' },
    body: envelope({ process: { pid: h.pid } }),
    signal: ac.signal,
  })
  assert.equal(res.status, 200)
  const times = []
  let buf = Buffer.alloc(0)
  const t0 = Date.now()
  const reader = res.body.getReader()
  setTimeout(() => ac.abort(), 3500)
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buf = Buffer.concat([buf, value])
      const fs = frames(buf)
      while (times.length < fs.filter((f) => f.json.event?.keepalive).length) times.push(Date.now() - t0)
    }
  } catch (err) {
    if (err.name !== 'AbortError') throw err
  }
  assert.ok(times.length >= 2 && times.length <= 4, `keepalives at ${times}`)
  assert.equal(frames(buf)[0].json.event.start.pid, h.pid)
  await sbx.commands.kill(h.pid)
})

// 17
test('17 unknown pid and tag', async () => {
  const res = await fetch(`${ENVD}/process.Process/Connect`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/connect+json' },
    body: envelope({ process: { pid: 999999 } }),
  })
  assert.equal(res.status, 200)
  const fs = frames(Buffer.from(await res.arrayBuffer()))
  assert.equal(fs.length, 1)
  assert.equal(fs[0].flags, 2)
  assert.equal(fs[0].json.error.code, 'not_found')
  const un = await fetch(`${ENVD}/process.Process/SendSignal`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ process: { tag: 'no-such-tag' }, signal: 'SIGNAL_SIGKILL' }),
  })
  assert.equal(un.status, 404)
  assert.equal((await un.json()).code, 'not_found')
})

// 18
test('18 Stat with binary, JSON and gzip', async () => {
  const path = `${DIR}/stat18.txt`
  await sbx.files.write(path, 'abc')
  const pathBytes = Buffer.from(path)
  const proto = Buffer.concat([Buffer.from([0x0a, pathBytes.length]), pathBytes])
  const bin = await fetch(`${ENVD}/filesystem.Filesystem/Stat`, {
    method: 'POST', headers: { 'Content-Type': 'application/proto' }, body: proto,
  })
  assert.equal(bin.status, 200)
  assert.equal(bin.headers.get('content-type'), 'application/proto')
  assert.ok(Buffer.from(await bin.arrayBuffer()).includes(pathBytes))
  const json = await fetch(`${ENVD}/filesystem.Filesystem/Stat`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ path }),
  })
  assert.equal(json.status, 200)
  const entry = (await json.json()).entry
  assert.equal(entry.size, '3')
  assert.equal(entry.type, 'FILE_TYPE_FILE')
  const gz = await fetch(`${ENVD}/filesystem.Filesystem/Stat`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' },
    body: gzipSync(JSON.stringify({ path })),
  })
  assert.equal(gz.status, 200)
  assert.equal((await gz.json()).entry.path, path)
})

// 19
test('19 write/read round trips, 50 MiB with flat memory', async () => {
  const p = `${DIR}/rt`
  await sbx.files.write(`${p}.txt`, 'héllo wörld\n')
  assert.equal(await sbx.files.read(`${p}.txt`), 'héllo wörld\n')
  const all = new Uint8Array(256).map((_, i) => i)
  await sbx.files.write(`${p}.bin`, all.buffer)
  assert.deepEqual(await sbx.files.read(`${p}.bin`, { format: 'bytes' }), all)

  const size = 50 << 20
  const big = new Uint8Array(size)
  for (let i = 0; i < size; i += 4096) big[i] = (i / 4096) & 0xff
  const want = createHash('sha256').update(big).digest('hex')
  const before = peakRSS(ENVD_PID)
  await sbx.files.write(`${p}.big`, new Blob([big]))
  const back = await sbx.files.read(`${p}.big`, { format: 'bytes' })
  assert.equal(back.length, size)
  assert.equal(createHash('sha256').update(back).digest('hex'), want)
  const grew = peakRSS(ENVD_PID) - before
  assert.ok(grew < 32 << 20, `envd peak RSS grew by ${grew >> 20} MiB for a 50 MiB round trip`)
})

// 20
test('20 multi-file write into new nested directories', async () => {
  const files = [
    { path: `${DIR}/w20/a/b/one.txt`, data: 'one' },
    { path: `${DIR}/w20/c/two.txt`, data: 'two' },
  ]
  const infos = await sbx.files.write(files)
  assert.equal(infos.length, 2)
  assert.deepEqual(infos.map((i) => i.path), files.map((f) => f.path))
  assert.deepEqual(infos.map((i) => i.name), ['one.txt', 'two.txt'])
  for (const f of files) {
    assert.equal(await sbx.files.read(f.path), f.data)
    assert.equal((await sbx.files.getInfo(f.path)).owner, USER)
  }
  assert.equal((await sbx.files.getInfo(`${DIR}/w20/a/b`)).owner, USER)
})

// 21
test('21 gzip stream write with metadata', async () => {
  const path = `${DIR}/w21.txt`
  const content = 'streamed '.repeat(10000)
  const stream = new ReadableStream({
    start(c) {
      const b = new TextEncoder().encode(content)
      for (let i = 0; i < b.length; i += 7000) c.enqueue(b.subarray(i, i + 7000))
      c.close()
    },
  })
  const info = await sbx.files.write(path, stream, { gzip: true, metadata: { k: 'v' } })
  assert.deepEqual(info.metadata, { k: 'v' })
  assert.equal(await sbx.files.read(path), content)
  assert.deepEqual((await sbx.files.getInfo(path)).metadata, { k: 'v' })
})

// 21 (ours, docs/envd.md): metadata in list, kept keys, removal by a write without metadata
test('21b metadata in list; a write without metadata removes it', async () => {
  const dir = `${DIR}/w21b`
  const path = `${dir}/m.txt`
  let info = await sbx.files.write(path, 'one', { metadata: { Owner: 'team-a', k: 'v' } })
  assert.deepEqual(info.metadata, { owner: 'team-a', k: 'v' })
  await sbx.files.write(`${dir}/plain.txt`, 'plain')
  let entries = await sbx.files.list(dir)
  assert.deepEqual(entries.find((e) => e.name === 'm.txt').metadata, { owner: 'team-a', k: 'v' })
  assert.equal(entries.find((e) => e.name === 'plain.txt').metadata, undefined)
  // With metadata: its keys change, the others stay.
  info = await sbx.files.write(path, 'two', { metadata: { k: 'changed' } })
  assert.deepEqual(info.metadata, { owner: 'team-a', k: 'changed' })
  assert.deepEqual((await sbx.files.getInfo(path)).metadata, { owner: 'team-a', k: 'changed' })
  // Without metadata: none left.
  info = await sbx.files.write(path, 'three')
  assert.equal(info.metadata, undefined)
  assert.equal((await sbx.files.getInfo(path)).metadata, undefined)
  entries = await sbx.files.list(dir)
  assert.equal(entries.find((e) => e.name === 'm.txt').metadata, undefined)
  assert.equal(await sbx.files.read(path), 'three')
  // Keys the SDK refuses never reach envd.
  await assert.rejects(sbx.files.write(path, 'x', { metadata: { 'a b': 'c' } }), InvalidArgumentError)
})

// 22
test('22 read errors, stream + gzip, Range', async () => {
  await assert.rejects(sbx.files.read(`${DIR}/missing`), FileNotFoundError)
  await assert.rejects(sbx.files.read(DIR), InvalidArgumentError)
  const path = `${DIR}/r22.txt`
  await sbx.files.write(path, 'x'.repeat(100000))
  const stream = await sbx.files.read(path, { format: 'stream', gzip: true })
  let n = 0
  for await (const chunk of stream) n += chunk.length
  assert.equal(n, 100000)
  const res = await fetch(`${ENVD}/files?path=${encodeURIComponent(path)}`, { headers: { Range: 'bytes=10-19' } })
  assert.equal(res.status, 206)
  assert.equal(await res.text(), 'x'.repeat(10))
})

// 23
test('23 list depth, types and symlinks', async () => {
  const d = `${DIR}/l23`
  await sbx.files.write([{ path: `${d}/f.txt`, data: 'f' }, { path: `${d}/sub/g.txt`, data: 'g' }])
  await sbx.commands.run(`ln -s ${d}/f.txt ${d}/link`, { user: 'root' })
  const one = await sbx.files.list(d)
  assert.deepEqual(one.map((e) => e.path).sort(), [`${d}/f.txt`, `${d}/link`, `${d}/sub`])
  const two = await sbx.files.list(d, { depth: 2 })
  assert.deepEqual(two.map((e) => e.path).sort(), [`${d}/f.txt`, `${d}/link`, `${d}/sub`, `${d}/sub/g.txt`])
  const by = Object.fromEntries(two.map((e) => [e.path, e]))
  assert.equal(by[`${d}/f.txt`].type, FileType.FILE)
  assert.equal(by[`${d}/sub`].type, FileType.DIR)
  assert.equal(by[`${d}/link`].symlinkTarget, `${d}/f.txt`)
})

// 24
test('24 getInfo and exists', async () => {
  const path = `${DIR}/i24.txt`
  const t0 = Date.now()
  await sbx.files.write(path, '12345')
  const i = await sbx.files.getInfo(path)
  assert.equal(i.name, 'i24.txt')
  assert.equal(i.type, FileType.FILE)
  assert.equal(i.size, 5)
  assert.equal(i.mode, 420)
  assert.equal(i.permissions, '-rw-r--r--')
  assert.equal(i.owner, USER)
  assert.equal(i.group, USER)
  assert.ok(i.modifiedTime instanceof Date && Math.abs(i.modifiedTime.getTime() - t0) < 60000, `modifiedTime ${i.modifiedTime}`)
  assert.equal(await sbx.files.exists(path), true)
  assert.equal(await sbx.files.exists(`${DIR}/nope`), false)
})

// 25
test('25 makeDir and rename', async () => {
  const d = `${DIR}/m25/a/b`
  assert.equal(await sbx.files.makeDir(d), true)
  assert.equal(await sbx.files.makeDir(d), false)
  await sbx.files.write(`${DIR}/m25/src.txt`, 's')
  const e = await sbx.files.rename(`${DIR}/m25/src.txt`, `${DIR}/m25/dst.txt`)
  assert.equal(e.path, `${DIR}/m25/dst.txt`)
  assert.equal(e.name, 'dst.txt')
  await assert.rejects(sbx.files.rename(`${DIR}/m25/src.txt`, `${DIR}/m25/x.txt`), FileNotFoundError)
})

// 26
test('26 remove', async () => {
  await sbx.files.write(`${DIR}/r26/a/b.txt`, 'b')
  await sbx.files.remove(`${DIR}/r26`)
  assert.equal(await sbx.files.exists(`${DIR}/r26`), false)
  await sbx.files.remove(`${DIR}/r26`)
})

// 27
test('27 watchDir recursive with entries', async () => {
  const d = `${DIR}/w27`
  await sbx.files.makeDir(`${d}/sub`)
  const events = []
  const w = await sbx.files.watchDir(d, (ev) => { events.push(ev) }, { recursive: true, includeEntry: true })
  try {
    await sbx.files.write(`${d}/sub/a.txt`, 'data')
    await eventually('create and write events', 5000, () =>
      events.some((e) => e.name === 'sub/a.txt' && e.type === FilesystemEventType.WRITE))
      .catch((err) => { throw new Error(`${err.message}; events ${JSON.stringify(events.map((e) => [e.name, e.type]))}`) })
    const c = events.findIndex((e) => e.name === 'sub/a.txt' && e.type === FilesystemEventType.CREATE)
    const wr = events.findIndex((e) => e.name === 'sub/a.txt' && e.type === FilesystemEventType.WRITE)
    assert.ok(c >= 0 && c < wr, `events ${JSON.stringify(events.map((e) => [e.name, e.type]))}`)
    assert.equal(events[c].entry?.path, `${d}/sub/a.txt`)
  } finally {
    await w.stop()
  }
  await assert.rejects(sbx.files.watchDir(`${d}/sub/a.txt`, () => {}), InvalidArgumentError)
  await assert.rejects(sbx.files.watchDir(`${d}/missing`, () => {}), FileNotFoundError)
})
