// Starts headless Chromium or Firefox ESR with WebGPU on, through puppeteer-core and the system's browsers.
import puppeteer from 'puppeteer-core';

export const BROWSERS = ['chromium', 'firefox'];

export async function launch(name) {
  if (name === 'chromium') {
    return puppeteer.launch({
      browser: 'chrome',
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--autoplay-policy=no-user-gesture-required'],
      protocolTimeout: 600_000,
    });
  }
  if (name === 'firefox') {
    return puppeteer.launch({
      browser: 'firefox',
      executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
      headless: true,
      extraPrefsFirefox: {
        'dom.webgpu.enabled': true,
        'gfx.webgpu.ignore-blocklist': true,
        'media.autoplay.default': 0,
        'media.autoplay.blocking_policy': 0,
        'media.autoplay.block-webaudio': false,
        'media.block-autoplay-until-in-foreground': false,
        'media.autoplay.enabled.user-gestures-needed': false,
      },
      protocolTimeout: 600_000,
    });
  }
  throw new Error(`unknown browser ${name}: use one of ${BROWSERS.join(', ')}`);
}

// Polls `fn` in the page until it returns a truthy value (returned), or fails after `ms`.
export async function until(page, fn, ms, what, ...args) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await page.evaluate(fn, ...args);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
