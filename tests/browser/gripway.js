// Shared start-up for the browser tests: the real gripway binary on free ports (learned from
// its start-up log), the publish API, and Debian's headless Chromium through playwright-core.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.GRIPWAY_BIN || path.join(root, 'target', 'debug', 'gripway');
const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';

// Starts gripway (demo origin unless `args` add routes); resolves to
// { proc, log, addr, publish, admin }.
export function startGripway(args = []) {
  const proc = spawn(bin, ['--port', '127.0.0.1:0', '--publish-port', '127.0.0.1:0',
    '--admin-port', '127.0.0.1:0', '--log-level', 'info', ...args],
  { stdio: ['ignore', 'ignore', 'pipe'] });
  const log = [];
  return new Promise((resolve, reject) => {
    const found = {};
    const timer = setTimeout(() => { proc.kill(); reject(new Error('gripway did not start:\n' + log.join('\n'))); }, 20000);
    createInterface({ input: proc.stderr }).on('line', (line) => {
      log.push(line);
      for (const [k, re] of [['addr', /clients on (\S+)/], ['publish', /publish API on (\S+)/],
        ['admin', /metrics on http:\/\/([^/\s]+)/]]) {
        const m = line.match(re);
        if (m) found[k] = m[1];
      }
      if (found.addr && found.publish && found.admin && !found.done) {
        found.done = true;
        clearTimeout(timer);
        resolve({ proc, log, addr: found.addr, publish: found.publish, admin: found.admin });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gripway exited with ${code}:\n${log.join('\n')}`));
    });
  });
}

// POSTs `body` to gripway's publish API; it must answer 200.
export async function publish(addr, body) {
  const r = await fetch(`http://${addr}/publish/`, { method: 'POST', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' }, signal: AbortSignal.timeout(10000) });
  assert.equal(r.status, 200, await r.text());
}

// The value of one sample (`name{labels}` exactly as exposed) on gripway's metrics page, or
// undefined when it is not there.
export async function metric(gw, sample) {
  const r = await fetch(`http://${gw.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
  for (const line of (await r.text()).split('\n')) {
    if (line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    if (line.slice(0, at) === sample) return Number(line.slice(at + 1));
  }
  return undefined;
}

// Waits until `sample` equals `want`; throws after `limit` ms.
export async function waitMetric(gw, sample, want, limit = 10000) {
  const deadline = Date.now() + limit;
  let last;
  while (Date.now() < deadline) {
    last = await metric(gw, sample);
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${sample} stayed at ${last}, not ${want}`);
}

// Headless Chromium with nothing in the background (and `extra` flags).
export function launchBrowser(extra = []) {
  return chromium.launch({
    executablePath: browserPath,
    timeout: 30000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extra],
  });
}

// Publishes with `publishOnce()` until `page` shows `selector` (a publish racing the page's
// subscription is repeated, so tests wait on delivery, not on timing); false after `limit` ms.
export async function publishUntilShown(page, selector, publishOnce, limit = 15000) {
  const deadline = Date.now() + limit;
  while (Date.now() < deadline) {
    await publishOnce();
    if (await page.waitForSelector(selector, { timeout: 1000 }).then(() => true, () => false)) {
      return true;
    }
  }
  return false;
}
