// Recovery in a real browser: headless Chromium's own EventSource, through gripway, to an
// origin that knows nothing of history (it answers every /events request with the same
// Grip-Hold: stream, Grip-Channel and a `retry: 500` hint). The test ends the stream with a
// published `close` action; EventSource reconnects by itself with Last-Event-ID, and gripway
// serves what was published while the page was away from its history.
//
// "While away" is made certain, not left to timing: the origin holds the page's reconnect
// request until the test has published the missed events and gripway has kept them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchBrowser, publish, startGripway, waitMetric } from './gripway.js';

const WAIT = 15000;

// The origin: `/page` is an empty HTML page (proxied, not held), `/events` a GRIP SSE stream
// on `channel`. `gate()` makes the next /events request wait until `open()` is called.
async function startOrigin(channel) {
  const origin = { events: [], held: null };
  origin.server = http.createServer(async (req, res) => {
    if (req.url === '/page') {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><title>recovery</title><p>recovery</p>');
      return;
    }
    if (req.url !== '/events') { // the browser's /favicon.ico
      res.writeHead(404);
      res.end();
      return;
    }
    origin.events.push({ lastEventId: req.headers['last-event-id'] });
    if (origin.held) await origin.held.promise;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Grip-Hold': 'stream',
      'Grip-Channel': channel });
    res.end('retry: 500\n\n');
  });
  await new Promise((resolve) => origin.server.listen(0, '127.0.0.1', resolve));
  origin.addr = `127.0.0.1:${origin.server.address().port}`;
  origin.gate = () => {
    let open;
    const promise = new Promise((resolve) => { open = resolve; });
    origin.held = { promise, open };
  };
  origin.open = () => { origin.held.open(); origin.held = null; };
  origin.stop = () => { origin.held?.open(); origin.server.closeAllConnections(); origin.server.close(); };
  return origin;
}

const item = (channel, id) => ({ channel, id,
  formats: { 'http-stream': { content: `id: ${id}\ndata: ${id}\n\n` } } });
const ids = (from, to) => Array.from({ length: to - from }, (_, i) => `e${from + i}`);
const publishIds = (gw, channel, list) => publish(gw.publish, { items: list.map((id) => item(channel, id)) });
const close = (gw, channel) => publish(gw.publish, {
  items: [{ channel, formats: { 'http-stream': { action: 'close' } } }] });

// Polls `cond()` (a function run in the page) until true; fails with what the page recorded.
async function pageWait(page, cond, what) {
  try {
    await page.waitForFunction(cond, null, { timeout: WAIT, polling: 20 });
  } catch {
    const log = await page.evaluate(() => window.log);
    assert.fail(`page never saw ${what}: ${JSON.stringify(log)}`);
  }
}

// Everything the page's EventSource did, in order, in `window.log`.
function openEventSource(page) {
  return page.evaluate(() => {
    window.log = [];
    window.opens = 0;
    window.errors = 0;
    const es = new EventSource('/events');
    es.onopen = () => { window.opens += 1; window.log.push('open'); };
    es.onerror = () => { window.errors += 1; window.log.push('error'); };
    es.onmessage = (e) => window.log.push(`${e.lastEventId}=${e.data}`);
    es.addEventListener('history-gap', (e) => window.log.push(`gap ${e.data}`));
    window.es = es;
  });
}

const messages = (page) => page.evaluate(() => window.log.filter((l) => l.includes('=')));

async function withSetup(channel, config, body) {
  const origin = await startOrigin(channel);
  let dir;
  const args = ['--route', `* ${origin.addr}`];
  if (config) {
    dir = mkdtempSync(path.join(tmpdir(), 'gripway-browser-'));
    writeFileSync(path.join(dir, 'gripway.toml'), config);
    args.push('--config', path.join(dir, 'gripway.toml'));
  }
  const gw = await startGripway(args);
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.goto(`http://${gw.addr}/page`, { timeout: WAIT });
    await openEventSource(page);
    await pageWait(page, () => window.opens === 1, 'the stream open');
    await waitMetric(gw, 'gripway_subscriptions', 1);
    await body({ gw, origin, page });
  } finally {
    await browser.close();
    gw.proc.kill();
    origin.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

// Ends the page's stream and waits until its EventSource is reconnecting, with the
// reconnect request held at the origin.
async function dropAndHold({ gw, origin, page }, channel) {
  origin.gate();
  await close(gw, channel);
  await pageWait(page, () => window.errors === 1, 'the stream end');
  await waitMetric(gw, 'gripway_subscriptions', 0);
  const deadline = Date.now() + WAIT;
  while (origin.events.length < 2) {
    assert.ok(Date.now() < deadline, 'EventSource never reconnected');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('EventSource gets the events published while it was disconnected, once each, in order',
  { timeout: 90000 }, async () => {
    await withSetup('recovery', null, async (s) => {
      const { gw, origin, page } = s;
      await publishIds(gw, 'recovery', ids(0, 5));
      await pageWait(page, () => window.log.filter((l) => l.includes('=')).length === 5, 'e0..e4');

      await dropAndHold(s, 'recovery');
      // published while the page has no stream: only history can give them to it
      for (const id of ids(5, 10)) await publishIds(gw, 'recovery', [id]);
      await waitMetric(gw, 'gripway_history_items', 10);
      origin.open();
      await pageWait(page, () => window.log.filter((l) => l.includes('=')).length === 10, 'e5..e9');
      await waitMetric(gw, 'gripway_subscriptions', 1);
      await publishIds(gw, 'recovery', ids(10, 12));
      await pageWait(page, () => window.log.filter((l) => l.includes('=')).length === 12, 'e10, e11');

      assert.equal(origin.events[1].lastEventId, 'e4', 'the browser reconnected with Last-Event-ID');
      assert.deepEqual(await messages(page), ids(0, 12).map((id) => `${id}=${id}`));
      const log = await page.evaluate(() => window.log);
      assert.deepEqual(log.filter((l) => !l.includes('=')), ['open', 'error', 'open']);
      assert.equal(origin.events.length, 2, 'one reconnect');
    });
  });

test('a page listening for history-gap is told when history does not reach back',
  { timeout: 90000 }, async () => {
    await withSetup('gappy', '[history]\nmax_items = 3\n', async (s) => {
      const { gw, origin, page } = s;
      await publishIds(gw, 'gappy', ids(0, 2));
      await pageWait(page, () => window.log.filter((l) => l.includes('=')).length === 2, 'e0, e1');

      await dropAndHold(s, 'gappy');
      await publishIds(gw, 'gappy', ids(2, 10));
      // e0..e6 dropped: e1, the page's last id, is gone
      await waitMetric(gw, 'gripway_history_evictions_total{reason="count"}', 7);
      origin.open();
      await pageWait(page, () => window.log.filter((l) => l.includes('=')).length === 5, 'e7..e9');

      const log = await page.evaluate(() => window.log);
      assert.deepEqual(log, ['open', 'e0=e0', 'e1=e1', 'error', 'open',
        'gap {"channel":"gappy","last-event-id":"e1"}', 'e7=e7', 'e8=e8', 'e9=e9'], JSON.stringify(log));
      assert.equal(origin.events[1].lastEventId, 'e1');
    });
  });
