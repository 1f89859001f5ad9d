// Runs a wasm-bindgen-test suite in a headless browser: `wasm-bindgen-test-runner` serves it (interactive mode),
// this script opens the page and waits for the harness's `test result:` line.
// Usage: node wasm-tests.mjs chromium|firefox URL
import { launch } from './launch.mjs';

const [name, url] = process.argv.slice(2);
const browser = await launch(name);
const page = await browser.newPage();
page.on('pageerror', (e) => console.log(`  [pageerror] ${e.message}`));
await page.goto(url, { waitUntil: 'load' });
const end = Date.now() + 540_000;
let shown = 0;
let text = '';
for (;;) {
  text = await page.evaluate(() => document.getElementById('output')?.textContent ?? '');
  process.stdout.write(text.slice(shown));
  shown = text.length;
  if (text.includes('test result: ')) break;
  if (Date.now() > end) {
    console.log(`\n${name}: timed out waiting for the kernel tests`);
    break;
  }
  await new Promise((r) => setTimeout(r, 250));
}
await browser.close();
const m = /test result: (\w+)\. (\d+) passed; (\d+) failed/.exec(text);
console.log(`\n${name} kernels: ${m ? `${m[2]} passed, ${m[3]} failed` : '0 passed, 1 failed'}`);
process.exit(m && m[1] === 'ok' ? 0 : 1);
