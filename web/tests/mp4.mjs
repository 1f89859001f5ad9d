// The native app's MP4 (H.264 + AAC, our own muxer) in a real browser: Chromium must read its metadata, report the
// size and duration, decode audio and video frames without a media error.
// Usage: node tests/mp4.mjs FILE.mp4 WIDTH HEIGHT SECONDS
import http from 'node:http';
import fs from 'node:fs';
import { launch, until } from './launch.mjs';

const [file, width, height, seconds] = process.argv.slice(2);
if (!file || !fs.existsSync(file)) {
  console.error(`usage: node tests/mp4.mjs FILE.mp4 WIDTH HEIGHT SECONDS (no file ${file})`);
  process.exit(2);
}
const bytes = fs.readFileSync(file);
const server = http.createServer((req, res) => {
  if (req.url === '/clip.mp4') {
    res.writeHead(200, { 'Content-Type': 'video/mp4', 'Content-Length': bytes.length });
    res.end(bytes);
  } else {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<!doctype html><video id="v" src="/clip.mp4" muted playsinline></video>');
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const browser = await launch('chromium');
let failed = false;
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.evaluate(() => document.getElementById('v').play().catch(() => {}));
  const r = await until(
    page,
    () => {
      const v = document.getElementById('v');
      if (v.error) return { error: v.error.message || String(v.error.code) };
      const frames = v.getVideoPlaybackQuality().totalVideoFrames;
      if (v.readyState < 2 || frames < 1 || !(v.webkitAudioDecodedByteCount > 0)) return null;
      return { duration: v.duration, width: v.videoWidth, height: v.videoHeight, frames, audio: v.webkitAudioDecodedByteCount };
    },
    60_000,
    'the MP4 to load and decode',
  );
  console.log(`chromium: ${JSON.stringify(r)}`);
  const problems = [];
  if (r.error) problems.push(`media error: ${r.error}`);
  if (r.width !== Number(width) || r.height !== Number(height)) problems.push(`size ${r.width}×${r.height}, want ${width}×${height}`);
  if (Math.abs(r.duration - Number(seconds)) > 0.06) problems.push(`duration ${r.duration}, want ${seconds}`);
  if (problems.length) {
    console.error(`FAIL mp4 in chromium: ${problems.join('; ')}`);
    failed = true;
  } else {
    console.log('ok   mp4 in chromium: plays (size, duration, decoded audio and frames)');
  }
} catch (e) {
  console.error(`FAIL mp4 in chromium: ${e.message}`);
  failed = true;
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
