// The unmodified e2b SDK reaching a real capsule's envd through the control
// plane's port proxy by E2B's header routing (E2B_SANDBOX_URL = the control
// plane; docs/api.md, Port proxy). Run by tests/proxy, which creates the
// capsule and passes WRENN_CP_URL, WRENN_SANDBOX_ID and WRENN_ENVD_TOKEN.
// The sandbox object is built directly (no E2B REST API is involved).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, AuthenticationError } from 'e2b'

function required(name) {
  const v = process.env[name]
  if (!v) throw new Error(`${name} must be set (run through tests/proxy)`)
  return v
}

const CP = required('WRENN_CP_URL')
const ID = required('WRENN_SANDBOX_ID')
const TOKEN = required('WRENN_ENVD_TOKEN')

function sandbox(envdAccessToken) {
  return new Sandbox({ sandboxId: ID, sandboxDomain: 'localhost', envdVersion: '0.6.4', envdAccessToken, sandboxUrl: CP })
}

test('commands, files and watch through the proxy', async () => {
  const sbx = sandbox(TOKEN)
  assert.equal(sbx.getHost(8000), `8000-${ID}.localhost`)
  const r = await sbx.commands.run('echo through-the-proxy; echo err >&2')
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'through-the-proxy\n')
  assert.equal(r.stderr, 'err\n')

  // Streamed output arrives while the command still runs.
  const seen = []
  const h = await sbx.commands.run('echo first; read x; echo "got $x"', {
    background: true,
    stdin: true,
    onStdout: (d) => seen.push(d),
  })
  for (let i = 0; i < 600 && !seen.join('').includes('first'); i++) await new Promise((res) => setTimeout(res, 100))
  assert.match(seen.join(''), /first/)
  await sbx.commands.sendStdin(h.pid, 'abc\n')
  const done = await h.wait()
  assert.match(done.stdout, /got abc/)

  const dir = `/tmp/sdk-${Date.now()}`
  await sbx.files.makeDir(dir)
  const events = []
  const watcher = await sbx.files.watchDir(dir, (e) => events.push(e))
  const content = 'x'.repeat(3 << 20)
  const info = await sbx.files.write(`${dir}/big.txt`, content)
  assert.equal(info.path, `${dir}/big.txt`)
  assert.equal(await sbx.files.read(`${dir}/big.txt`), content)
  assert.deepEqual((await sbx.files.list(dir)).map((e) => e.name), ['big.txt'])
  for (let i = 0; i < 600 && !events.some((e) => e.name === 'big.txt'); i++) await new Promise((res) => setTimeout(res, 100))
  assert.ok(events.some((e) => e.name === 'big.txt'), 'watch event through the proxy')
  await watcher.stop()

  // File metadata works on the capsule's filesystem (gVisor), in /tmp and in the root filesystem.
  for (const path of [`${dir}/m.txt`, `/root/sdk-m-${Date.now()}.txt`]) {
    const m = await sbx.files.write(path, 'm', { metadata: { k: 'v' } })
    assert.deepEqual(m.metadata, { k: 'v' }, path)
    assert.deepEqual((await sbx.files.getInfo(path)).metadata, { k: 'v' }, path)
    await sbx.files.write(path, 'plain')
    assert.equal((await sbx.files.getInfo(path)).metadata, undefined, path)
  }
})

test('envd without its token is refused by the proxy', async () => {
  await assert.rejects(sandbox('not-the-token').commands.run('true'), AuthenticationError)
})
