// The unmodified e2b SDK 2.50.0 against the full Wrenn stack: create (POST /sandboxes), commands,
// files, connect (POST /sandboxes/{id}/connect), kill. Run by ../platform_test.go.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Sandbox, SandboxNotFoundError } from 'e2b'

test('SDK 2.50: create, run, files, pause, connect, kill', async () => {
  const sbx = await Sandbox.create('base', { metadata: { sdk: '2.50' }, envs: { FROM: 'v1 route' }, timeoutMs: 600_000 })
  try {
    assert.match(sbx.sandboxId, /^[a-z0-9]+$/)
    assert.equal((await sbx.commands.run('echo $FROM; whoami')).stdout, 'v1 route\nuser\n')
    await sbx.files.write('/home/user/x.txt', 'x')
    assert.equal(await sbx.files.read('/home/user/x.txt'), 'x')
    assert.equal(await sbx.pause(), true)
    const back = await Sandbox.connect(sbx.sandboxId)
    assert.equal(await back.files.read('/home/user/x.txt'), 'x')
    assert.equal((await back.commands.run('echo again')).stdout, 'again\n')
    const c = await Sandbox.connect(sbx.sandboxId)
    assert.equal(c.sandboxId, sbx.sandboxId)
  } finally {
    assert.equal(await Sandbox.kill(sbx.sandboxId), true)
  }
  await assert.rejects(Sandbox.getInfo(sbx.sandboxId), SandboxNotFoundError)
})
