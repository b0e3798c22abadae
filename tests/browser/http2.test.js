// A real browser over HTTPS and HTTP/2: headless Chromium trusts a certificate made for this
// test, opens gripway's demo page on its TLS port, and opens 20 EventSources to the same
// origin at once. Over HTTP/1.1 a browser allows 6 connections per host, so most of them
// would wait; over HTTP/2 they share one connection, and every one must receive every event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchBrowser, publish, startGripway } from './gripway.js';

const STREAMS = 20;
const EVENTS = 5;

// A key and a certificate for localhost in Pushpin's layout (`default.crt`/`default.key`),
// and the base64 SHA-256 of its public key, which Chromium is told to trust.
function makeCerts() {
  const dir = mkdtempSync(path.join(tmpdir(), 'gripway-h2-browser-'));
  const key = path.join(dir, 'default.key');
  const crt = path.join(dir, 'default.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', key, '-out', crt, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  const spki = execFileSync('sh', ['-c',
    `openssl x509 -in '${crt}' -pubkey -noout | openssl pkey -pubin -outform der `
    + '| openssl dgst -sha256 -binary | base64']).toString().trim();
  return { dir, spki };
}

test('20 EventSources on one page share an HTTP/2 connection and all get every event',
  { timeout: 90000 }, async () => {
    const certs = makeCerts();
    const gw = await startGripway(['--tls-port', '127.0.0.1:0', '--tls-certs-dir', certs.dir]);
    try {
      const tlsLine = gw.log.find((l) => l.includes('clients (TLS) on '));
      assert.ok(tlsLine, 'gripway logged its TLS listener');
      const port = tlsLine.match(/clients \(TLS\) on \S+:(\d+)/)[1];
      const browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${certs.spki}`]);
      try {
        const page = await browser.newPage();
        await page.goto(`https://localhost:${port}/`, { timeout: 15000 });
        const protocol = await page.evaluate(
          () => performance.getEntriesByType('navigation')[0].nextHopProtocol);
        assert.equal(protocol, 'h2', 'the page came over HTTP/2');
        await page.evaluate((n) => {
          window.got = [];
          window.opened = 0;
          for (let i = 0; i < n; i += 1) {
            window.got.push([]);
            const es = new EventSource(`/test/sse?stream=${i}`);
            es.onopen = () => { window.opened += 1; };
            es.onmessage = (e) => { window.got[i].push(e.data); };
          }
        }, STREAMS);
        await page.waitForFunction((n) => window.opened === n, STREAMS, { timeout: 20000 });
        // every stream is open (its response head arrived, so it is subscribed): publish
        for (let k = 0; k < EVENTS; k += 1) {
          await publish(gw.publish, { items: [{ channel: 'test', id: `e${k}`, formats: {
            'http-stream': { content: `data: event ${k}\n\n` } } }] });
        }
        await page.waitForFunction(([n, m]) => window.got.every((g) => g.length >= m),
          [STREAMS, EVENTS], { timeout: 20000 }).catch(() => {});
        const got = await page.evaluate(() => window.got);
        const want = Array.from({ length: EVENTS }, (_, k) => `event ${k}`);
        assert.equal(got.length, STREAMS);
        got.forEach((g, i) => assert.deepEqual(g, want, `stream ${i}`));
        const protocols = await page.evaluate(() => performance.getEntriesByType('resource')
          .filter((r) => r.name.includes('/test/sse')).map((r) => r.nextHopProtocol));
        // entries appear when a stream ends; those present were HTTP/2
        assert.ok(protocols.every((p) => p === 'h2'), protocols.join(','));
      } finally {
        await browser.close();
      }
    } finally {
      gw.proc.kill();
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });

test('a wss WebSocket from an HTTP/2 page echoes and receives published messages',
  { timeout: 90000 }, async () => {
    // the page's connection announces WebSockets over HTTP/2 (RFC 8441): Chromium may open
    // the WebSocket as a stream of it; either way it must work
    const certs = makeCerts();
    const gw = await startGripway(['--tls-port', '127.0.0.1:0', '--tls-certs-dir', certs.dir]);
    try {
      const port = gw.log.find((l) => l.includes('clients (TLS) on '))
        .match(/clients \(TLS\) on \S+:(\d+)/)[1];
      const browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${certs.spki}`]);
      try {
        const page = await browser.newPage();
        await page.goto(`https://localhost:${port}/`, { timeout: 15000 });
        await page.evaluate(() => new Promise((resolve, reject) => {
          window.frames_ = [];
          const ws = new WebSocket(`wss://${location.host}/test/websocket`);
          window.ws_ = ws;
          ws.onmessage = (e) => window.frames_.push(e.data);
          ws.onopen = () => { ws.send('hello from the page'); resolve(); };
          ws.onerror = () => reject(new Error('websocket error'));
        }));
        await page.waitForFunction(() => window.frames_.includes('hello from the page'),
          null, { timeout: 15000 });
        const deadline = Date.now() + 15000;
        let seen = false;
        while (!seen && Date.now() < deadline) {
          await publish(gw.publish, { items: [{ channel: 'test', formats: {
            'ws-message': { content: 'published to the page' } } }] });
          seen = await page.waitForFunction(() => window.frames_.includes('published to the page'),
            null, { timeout: 500 }).then(() => true, () => false);
        }
        assert.ok(seen, 'the published message reached the page');
      } finally {
        await browser.close();
      }
    } finally {
      gw.proc.kill();
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });
