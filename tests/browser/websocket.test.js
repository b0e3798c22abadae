// A real browser's WebSocket through gripway: headless Chromium opens the demo page, whose
// WebSocket to /test/websocket reaches the demo origin over WebSocket-over-HTTP; a message
// typed into the page's form must come back as the origin's echo, and a `ws-message`
// published to channel `test` must appear on the page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, publish, publishUntilShown, startGripway } from './gripway.js';

const wsTexts = (page) => page.$$eval('#ws-messages li.ws', (els) => els.map((e) => e.textContent));

test('WebSocket on the demo page echoes and receives a published message', { timeout: 60000 }, async () => {
  const gw = await startGripway();
  try {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`http://${gw.addr}/`, { timeout: 15000 });
      await page.waitForFunction(() => document.getElementById('ws-status').textContent === 'open', null, { timeout: 15000 });

      // the echo: type, submit, and the origin's answer is listed
      await page.fill('#ws-input', 'typed in the browser');
      await page.press('#ws-input', 'Enter');
      await page.waitForSelector('li.ws', { timeout: 10000 });
      assert.deepEqual(await wsTexts(page), ['typed in the browser']);

      // a publish to `test` (repeated until the subscription has taken effect)
      const published = { items: [{ channel: 'test', formats: { 'ws-message': { content: 'published to test' } } }] };
      const shown = await publishUntilShown(page, 'li.ws:nth-child(2)', () => publish(gw.publish, published));
      assert.ok(shown, 'the published message appeared on the page');
      const texts = await wsTexts(page);
      assert.equal(texts[0], 'typed in the browser');
      assert.ok(texts.slice(1).length >= 1 && texts.slice(1).every((t) => t === 'published to test'), texts.join('|'));
      assert.equal(await page.textContent('#ws-status'), 'open');
    } finally {
      await browser.close();
    }
  } finally {
    gw.proc.kill();
  }
});
