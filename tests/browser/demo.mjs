// Drives the demo page in headless Chromium like a person would: picks a video, waits for the
// thumbnail, starts playback as soon as Play is enabled, waits for the end, and saves a
// screenshot. Prints what it saw as one JSON object; the Rust test judges it.
//
// usage: node demo.mjs PAGE_URL VIDEO_FILE SCREENSHOT_PNG   (PULSE_WEB_DIR: where npm installed)
import { createRequire } from "node:module";
import path from "node:path";

const [pageUrl, videoFile, screenshot] = process.argv.slice(2);
const require = createRequire(path.join(process.env.PULSE_WEB_DIR, "package.json"));
const { chromium } = require("playwright-core");
const STEP = 120_000;

const browser = await chromium.launch({
  executablePath: process.env.PULSE_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
  ],
});
const seen = { console: [] };
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 } });
  page.on("console", (message) => seen.console.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => seen.console.push(`pageerror: ${error.message}`));
  await page.goto(pageUrl);
  await page.setInputFiles("#file", videoFile);

  await page.waitForFunction(() => {
    const thumbnail = document.getElementById("thumbnail");
    return !thumbnail.hidden && thumbnail.complete && thumbnail.naturalWidth > 0;
  }, null, { timeout: STEP });
  seen.thumbnail = await page.$eval("#thumbnail", (img) => ({
    width: img.naturalWidth, height: img.naturalHeight, blurred: getComputedStyle(img).filter.includes("blur"),
  }));

  await page.waitForFunction(() => !document.getElementById("play").disabled, null, { timeout: STEP });
  await page.click("#play");
  await page.waitForFunction(() => document.getElementById("video").currentTime > 0.5, null, { timeout: STEP });
  seen.stageWhenPlaying = await page.evaluate(() => document.body.dataset.stage);
  seen.levelsWhenPlaying = await page.$$eval("#qualities li", (items) => items.map((item) => item.textContent));

  await page.waitForFunction(() => ["done", "partial", "failed"].includes(document.body.dataset.stage), null, { timeout: STEP });
  await page.waitForTimeout(500);
  seen.finalStage = await page.evaluate(() => document.body.dataset.stage);
  seen.levels = await page.$$eval("#qualities li", (items) => items.map((item) => item.textContent));
  seen.message = await page.$eval("#message", (message) => message.textContent);
  seen.ringHidden = await page.$eval("#ring", (ring) => ring.hidden);
  seen.videoError = await page.$eval("#video", (video) => video.error && video.error.message);
  await page.screenshot({ path: screenshot, fullPage: true });
} catch (error) {
  seen.error = String(error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
