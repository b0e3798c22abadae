// A real browser as the client: headless Chromium (Debian's package) opens the demo page
// served through gripway, whose EventSource subscribes to channel `test`; an event published
// to gripway's API must appear on the page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, publish, publishUntilShown, startGripway } from './gripway.js';

test('EventSource on the demo page receives a published event', { timeout: 60000 }, async () => {
  const gw = await startGripway();
  try {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`http://${gw.addr}/`, { timeout: 15000 });
      await page.waitForFunction(() => document.getElementById('status').textContent === 'open', null, { timeout: 15000 });
      const shown = await publishUntilShown(page, 'li.event', () => publish(gw.publish, {
        items: [{ channel: 'test', formats: {
          'http-stream': { content: 'event: message\ndata: hello from gripway\n\n' } } }] }));
      assert.ok(shown, 'the event appeared on the page');
      const texts = await page.$$eval('li.event', (els) => els.map((e) => e.textContent));
      assert.equal(texts[0], 'hello from gripway');
    } finally {
      await browser.close();
    }
  } finally {
    gw.proc.kill();
  }
});
