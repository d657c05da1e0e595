// The unmodified e2b SDK 2.51.0 against the full Wrenn stack (docs/e2b.md): E2B_API_URL and
// E2B_SANDBOX_URL point at a control plane with a real agent. Run by platform_test.go, which starts the
// platform and passes E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY and WRENN_RUN (a unique run label).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import {
  Sandbox,
  CommandExitError,
  SandboxNotFoundError,
  AuthenticationError,
  FileNotFoundError,
  FilesystemEventType,
} from 'e2b'

const API = required('E2B_API_URL')
const KEY = required('E2B_API_KEY')
const RUN = required('WRENN_RUN')
const META = { suite: RUN, 'a b': 'c&d=e' }

function required(name) {
  const v = process.env[name]
  if (!v) throw new Error(`${name} must be set (run through platform_test.go)`)
  return v
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function eventually(what, ms, cond) {
  const deadline = Date.now() + ms
  for (;;) {
    if (await cond()) return
    if (Date.now() > deadline) assert.fail(`${what}: not within ${ms} ms`)
    await sleep(100)
  }
}

// v1 calls the Wrenn API with the same key.
async function v1(method, path, body) {
  const res = await fetch(`${API}${path}`, {
    method,
    headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

async function listAll(query, limit) {
  const p = Sandbox.list({ query, limit })
  const out = []
  let pages = 0
  while (p.hasNext) {
    out.push(...(await p.nextItems()))
    pages++
    assert.ok(pages < 50, 'paging does not end')
  }
  return { items: out, pages }
}

let sbx

before(async () => {
  sbx = await Sandbox.create('base', { metadata: META, envs: { GREETING: 'hello from e2b' }, timeoutMs: 900_000 })
})

after(async () => {
  if (sbx) await Sandbox.kill(sbx.sandboxId)
})

test('create: id form, env vars, default user, sudo', async () => {
  assert.match(sbx.sandboxId, /^[a-z0-9]+$/)
  const r = await sbx.commands.run('echo "$GREETING"; whoami; echo $HOME; pwd; sudo -n id -u')
  assert.equal(r.stdout, 'hello from e2b\nuser\n/home/user\n/home/user\n0\n')
  assert.equal(r.exitCode, 0)
  const info = await sbx.getInfo()
  assert.equal(info.state, 'running')
  assert.equal(info.templateId, 'base')
  assert.deepEqual(info.metadata, META)
  assert.match(info.envdVersion, /^\d+\.\d+\.\d+$/)
})

test('commands: exit codes, background + connect, stdin, kill, list', async () => {
  await assert.rejects(sbx.commands.run('echo err >&2; exit 3'), (e) => {
    assert.ok(e instanceof CommandExitError)
    assert.equal(e.exitCode, 3)
    assert.equal(e.stderr, 'err\n')
    return true
  })

  const bg = await sbx.commands.run('sleep 2; echo done', { background: true })
  await bg.disconnect()
  const again = await sbx.commands.connect(bg.pid)
  const res = await again.wait()
  assert.equal(res.stdout, 'done\n')

  const cat = await sbx.commands.run('cat', { background: true, stdin: true })
  await sbx.commands.sendStdin(cat.pid, 'via stdin\n')
  await sbx.commands.closeStdin(cat.pid)
  assert.equal((await cat.wait()).stdout, 'via stdin\n')

  const sl = await sbx.commands.run('sleep 300', { background: true, timeoutMs: 0 })
  const listed = (await sbx.commands.list()).find((p) => p.pid === sl.pid)
  assert.ok(listed, 'background process listed')
  assert.deepEqual(listed.args.slice(0, 2), ['-l', '-c'])
  assert.equal(await sbx.commands.kill(sl.pid), true)
  await assert.rejects(sl.wait(), (e) => e instanceof CommandExitError && e.exitCode === -1)
  await eventually('killed process gone', 30_000, async () => !(await sbx.commands.list()).some((p) => p.pid === sl.pid))
  assert.equal(await sbx.commands.kill(sl.pid), false)
})

test('pty: size, resize, kill', async () => {
  let text = ''
  const dec = new TextDecoder()
  const h = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => { text += dec.decode(d, { stream: true }) } })
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('stty size\n'))
  await eventually('24 80 printed', 30_000, () => text.includes('24 80'))
  await sbx.pty.resize(h.pid, { cols: 100, rows: 30 })
  await sbx.pty.sendInput(h.pid, new TextEncoder().encode('stty size\n'))
  await eventually('30 100 printed', 30_000, () => text.includes('30 100'))
  assert.equal(await sbx.pty.kill(h.pid), true)
})

test('files: write, read, list, watch, rename, remove', async () => {
  const dir = `/home/user/e2b-${RUN}`
  const events = []
  await sbx.files.makeDir(dir)
  const w = await sbx.files.watchDir(dir, (e) => events.push(e))
  const info = await sbx.files.write(`${dir}/a.txt`, 'alpha')
  assert.equal(info.path, `${dir}/a.txt`)
  assert.equal(await sbx.files.read(`${dir}/a.txt`), 'alpha')
  await eventually('watch event for a.txt', 30_000, () =>
    events.some((e) => e.name === 'a.txt' && (e.type === FilesystemEventType.CREATE || e.type === FilesystemEventType.WRITE)))
  await w.stop()
  const entries = await sbx.files.list(dir)
  assert.deepEqual(entries.map((e) => e.name), ['a.txt'])
  assert.equal(entries[0].owner, 'user')
  const moved = await sbx.files.rename(`${dir}/a.txt`, `${dir}/b.txt`)
  assert.equal(moved.name, 'b.txt')
  assert.equal(await sbx.files.exists(`${dir}/a.txt`), false)
  await sbx.files.remove(dir)
  assert.equal(await sbx.files.exists(dir), false)
  await assert.rejects(sbx.files.read(`${dir}/b.txt`), FileNotFoundError)
})

test('files: 50 MiB upload and download', async () => {
  const data = randomBytes(50 << 20)
  const want = createHash('sha256').update(data).digest('hex')
  await sbx.files.write('/home/user/big.bin', new Blob([data]))
  const r = await sbx.commands.run('sha256sum /home/user/big.bin')
  assert.equal(r.stdout.split(' ')[0], want)
  const h = createHash('sha256')
  let n = 0
  for await (const chunk of await sbx.files.read('/home/user/big.bin', { format: 'stream' })) {
    h.update(chunk)
    n += chunk.length
  }
  assert.equal(n, 50 << 20)
  assert.equal(h.digest('hex'), want)
  await sbx.files.remove('/home/user/big.bin')
})

test('the same key and capsules in both APIs; list with a metadata filter and paging', async () => {
  // The E2B sandbox through /v1.
  // Sandbox cl0k4x… is capsule cl-0k4x….
  assert.match(sbx.sandboxId, /^cl[a-z0-9]+$/)
  const got = await v1('GET', `/v1/capsules/${sbx.sandboxId.replace(/^cl/, 'cl-')}`)
  assert.equal(got.status, 200)
  assert.equal(got.body.status, 'running')

  // A capsule made through /v1, used through the SDK.
  const made = await v1('POST', '/v1/capsules', { template: 'base' })
  assert.equal(made.status, 201, JSON.stringify(made.body))
  const otherId = made.body.id.replace(/^cl-/, 'cl')
  try {
    const other = await Sandbox.connect(otherId)
    assert.equal((await other.commands.run('echo via-sdk')).stdout, 'via-sdk\n')

    // Only sbx has the metadata; paging one by one finds it once.
    const filtered = await listAll({ metadata: META, state: ['running'] }, 1)
    assert.deepEqual(filtered.items.map((s) => s.sandboxId), [sbx.sandboxId])
    assert.deepEqual(filtered.items[0].metadata, META)
    const none = await listAll({ metadata: { suite: 'nothing' } }, 1)
    assert.equal(none.items.length, 0)
    const all = await listAll({ state: ['running'] }, 1)
    const ids = all.items.map((s) => s.sandboxId)
    assert.ok(ids.includes(sbx.sandboxId) && ids.includes(otherId), `listed ${ids}`)
    assert.equal(new Set(ids).size, ids.length, 'no sandbox twice')
    assert.ok(all.pages >= 2)

    assert.equal(await Sandbox.kill(otherId), true)
    assert.equal(await Sandbox.kill(otherId), false)
    assert.equal((await v1('GET', `/v1/capsules/${made.body.id}`)).body.status, 'stopped')
  } finally {
    await v1('DELETE', `/v1/capsules/${made.body.id}`)
  }
})

test('setTimeout moves endAt; metrics', async () => {
  const before = await sbx.getInfo()
  await sbx.setTimeout(120_000)
  const after = await sbx.getInfo()
  assert.ok(Math.abs(after.endAt.getTime() - (Date.now() + 120_000)) < 30_000, `endAt ${after.endAt.toISOString()}`)
  assert.ok(after.endAt < before.endAt)
  await sbx.setTimeout(900_000)
  const m = await sbx.getMetrics()
  assert.ok(Array.isArray(m))
  for (const p of m) {
    assert.ok(p.timestamp instanceof Date && typeof p.cpuUsedPct === 'number' && p.memTotal > 0 && p.diskTotal > 0)
  }
})

test('pause, then connect resumes with files and processes intact', async () => {
  await sbx.files.write('/home/user/kept.txt', 'still here')
  const bg = await sbx.commands.run('sleep 3600', { background: true, timeoutMs: 0 })
  await bg.disconnect()
  assert.equal(await sbx.pause(), true)
  assert.equal(await sbx.pause(), false)
  assert.equal((await sbx.getInfo()).state, 'paused')
  assert.equal(await sbx.isRunning(), false)
  const listed = await listAll({ metadata: META, state: ['paused'] }, 10)
  assert.deepEqual(listed.items.map((s) => s.sandboxId), [sbx.sandboxId])

  const back = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 900_000 })
  assert.equal((await back.getInfo()).state, 'running')
  assert.equal(await back.isRunning(), true)
  assert.equal(await back.files.read('/home/user/kept.txt'), 'still here')
  assert.ok((await back.commands.list()).some((p) => p.pid === bg.pid), 'background process survived the pause')
  assert.equal(await back.commands.kill(bg.pid), true)
})

test('errors: bad key, unsupported settings', async () => {
  await assert.rejects(Sandbox.list({ apiKey: 'wrn_' + '0'.repeat(32) }).nextItems(), AuthenticationError)
  await assert.rejects(
    Sandbox.create('base', { network: { denyOut: ['0.0.0.0/0'] } }),
    (e) => /not supported by Wrenn/.test(e.message),
  )
  await assert.rejects(Sandbox.create('no-such-template'), (e) => /template not found/.test(e.message))
})

test('kill', async () => {
  assert.equal(await sbx.kill(), true)
  assert.equal(await sbx.isRunning(), false)
  assert.equal(await Sandbox.kill(sbx.sandboxId), false)
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId), SandboxNotFoundError)
  sbx = undefined
})
