// One run of the E2B SDK (2.51.0) next to the Wrenn API on the same platform (docs/benchmarks.md):
// create → first command result, and the command round trip. Run by platform_test.go with
// WRENN_E2B_BENCH=1; prints a Markdown table.
import { Sandbox } from 'e2b'

const API = process.env.E2B_API_URL
const KEY = process.env.E2B_API_KEY
const ROUNDS = 5
const TRIPS = 20

async function v1(method, path, body) {
  const res = await fetch(`${API}${path}`, {
    method,
    headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await res.text()
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`)
  return text ? JSON.parse(text) : null
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const ms = (x) => `${x.toFixed(1)} ms`

async function timed(fn) {
  const t = performance.now()
  await fn()
  return performance.now() - t
}

const sdkCreate = [], apiCreate = [], sdkTrip = [], apiTrip = []
for (let i = 0; i < ROUNDS; i++) {
  // Alternate which side goes first.
  const sides = [
    async () => {
      let sbx
      sdkCreate.push(await timed(async () => {
        sbx = await Sandbox.create('base')
        await sbx.commands.run('echo x')
      }))
      await sbx.kill()
    },
    async () => {
      let id
      apiCreate.push(await timed(async () => {
        id = (await v1('POST', '/v1/capsules', { template: 'base' })).id
        await v1('POST', `/v1/capsules/${id}/exec`, { cmd: 'echo', args: ['x'] })
      }))
      await v1('DELETE', `/v1/capsules/${id}`)
    },
  ]
  if (i % 2) sides.reverse()
  for (const s of sides) await s()
}

const sbx = await Sandbox.create('base')
try {
  const id = sbx.sandboxId.replace(/^cl/, 'cl-') // the /v1 form of the id
  for (let i = 0; i < TRIPS; i++) {
    sdkTrip.push(await timed(() => sbx.commands.run('echo x')))
    apiTrip.push(await timed(() => v1('POST', `/v1/capsules/${id}/exec`, { cmd: 'echo', args: ['x'] })))
  }
} finally {
  await sbx.kill()
}

console.log(`| operation | E2B SDK 2.51.0 | Wrenn API | difference |`)
console.log(`|---|---|---|---|`)
for (const [name, a, b] of [
  [`create → first command result (base, median of ${ROUNDS})`, sdkCreate, apiCreate],
  [`command round trip (\`echo x\`, median of ${TRIPS})`, sdkTrip, apiTrip],
]) {
  const ma = median(a), mb = median(b)
  console.log(`| ${name} | ${ms(ma)} | ${ms(mb)} | ${ma >= mb ? '+' : '−'}${ms(Math.abs(ma - mb))} |`)
}
