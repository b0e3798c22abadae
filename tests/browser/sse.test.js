// A real browser as the client: headless Chromium (Debian's package) opens the demo page
// served through gripway, whose EventSource subscribes to channel `test`; an event published
// to gripway's API must appear on the page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.GRIPWAY_BIN || path.join(root, 'target', 'debug', 'gripway');
const browserPath = process.env.CHROMIUM || '/usr/bin/chromium';

function startGripway() {
  const proc = spawn(bin, ['--port', '127.0.0.1:0', '--publish-port', '127.0.0.1:0',
    '--admin-port', '127.0.0.1:0', '--log-level', 'info'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log = [];
  return new Promise((resolve, reject) => {
    const found = {};
    const timer = setTimeout(() => { proc.kill(); reject(new Error('gripway did not start:\n' + log.join('\n'))); }, 20000);
    createInterface({ input: proc.stderr }).on('line', (line) => {
      log.push(line);
      for (const [k, re] of [['addr', /clients on (\S+)/], ['publish', /publish API on (\S+)/]]) {
        const m = line.match(re);
        if (m) found[k] = m[1];
      }
      if (found.addr && found.publish && !found.done) {
        found.done = true;
        clearTimeout(timer);
        resolve({ proc, log, ...found });
      }
    });
    proc.on('exit', (code) => reject(new Error(`gripway exited with ${code}:\n${log.join('\n')}`)));
  });
}

async function publish(addr, body) {
  const r = await fetch(`http://${addr}/publish/`, { method: 'POST', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' } });
  assert.equal(r.status, 200, await r.text());
}

test('EventSource on the demo page receives a published event', { timeout: 60000 }, async () => {
  const gw = await startGripway();
  const browser = await chromium.launch({
    executablePath: browserPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`http://${gw.addr}/`);
    await page.waitForFunction(() => document.getElementById('status').textContent === 'open', null, { timeout: 15000 });
    // the stream is open: publish until the page shows it (a publish racing the subscription
    // is repeated, so the test waits on delivery, not on timing)
    const deadline = Date.now() + 15000;
    let shown = false;
    while (!shown && Date.now() < deadline) {
      await publish(gw.publish, { items: [{ channel: 'test', formats: {
        'http-stream': { content: 'event: message\ndata: hello from gripway\n\n' } } }] });
      shown = await page.waitForSelector('li.event', { timeout: 1000 }).then(() => true, () => false);
    }
    assert.ok(shown, 'the event appeared on the page');
    const texts = await page.$$eval('li.event', (els) => els.map((e) => e.textContent));
    assert.equal(texts[0], 'hello from gripway');
  } finally {
    await browser.close();
    gw.proc.kill();
  }
});
