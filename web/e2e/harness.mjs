// Runs the real service and a real browser for the end-to-end tests:
// `handler serve` (built beforehand by cargo) on a free loopback port with a
// fresh data directory and the offline Stripe simulator, serving the built
// web app (`npm run build`); Debian's Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

const here = dirname(fileURLToPath(import.meta.url));
export const WEB = resolve(here, '..');
const REPO = resolve(WEB, '..');
/** Screenshots of failed tests, and the server's log. Not committed. */
export const FAILURES = join(here, 'failures');
/** The README's screenshots: rewritten with UPDATE_SCREENSHOTS=1. */
const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS
  ? join(REPO, 'docs', 'screenshots')
  : join(here, 'failures', 'screenshots');

/** The documents-per-month limit of Free for these tests: small enough to hit. */
export const FREE_DOCS_LIMIT = 5;

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

export async function startService() {
  const bin = process.env.HANDLER_BIN ?? join(REPO, 'target', 'debug', 'handler');
  const dist = join(WEB, 'dist');
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build --bin handler\` first`);
  if (!existsSync(join(dist, 'index.html')))
    throw new Error(`${dist} has no build: run \`npm --prefix web run build\` first`);
  mkdirSync(FAILURES, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), 'kraftd-e2e-'));
  const port = await freePort();
  const log = createWriteStream(join(FAILURES, 'handler.log'));
  // Only what the service needs: no Stripe key (so the simulator), no SMTP
  // (emails become files), return URLs left to their local defaults.
  const child = spawn(bin, ['serve'], {
    env: {
      PATH: process.env.PATH,
      PORT: String(port),
      DATA_DIR: dataDir,
      WEB_DIST: dist,
      FREE_PLAN_DOCS_LIMIT: String(FREE_DOCS_LIMIT),
      LOG_FORMAT: 'text',
      RUST_LOG: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const exited = new Promise((ok) => child.on('exit', (code, signal) => ok({ code, signal })));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const early = await Promise.race([exited, new Promise((ok) => setTimeout(() => ok(null), 100))]);
    if (early) throw new Error(`handler serve exited (${JSON.stringify(early)}): see ${FAILURES}/handler.log`);
    try {
      if ((await fetch(`${base}/api/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new Error(`handler serve did not answer /api/health within 30 s`);
    }
  }
  return {
    base,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function startBrowser() {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(executablePath))
    throw new Error(`no Chromium at ${executablePath}: \`apt-get install chromium\` (or set CHROMIUM)`);
  return chromium.launch({
    executablePath,
    // Root on CI needs no sandbox; the rest keeps Chromium off the network
    // this machine does not have.
    chromiumSandbox: false,
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * The WCAG 2 A and AA rules axe-core checks (labels, names, contrast,
 * landmarks, ARIA use) on the page as it is now: a list of what fails.
 */
export async function accessibilityViolations(page) {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }),
  );
  return result.violations.map(
    (v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`,
  );
}

/** A picture of the page for the README, once it passes the accessibility rules. */
export async function screenshot(page, name) {
  const violations = await accessibilityViolations(page);
  if (violations.length) throw new Error(`${name}: accessibility violations:\n${violations.join('\n')}`);
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Runs a test's body; on failure keeps a screenshot of the page as it was. */
export async function withFailureScreenshot(page, name, body) {
  try {
    await body();
  } catch (e) {
    mkdirSync(FAILURES, { recursive: true });
    const file = join(FAILURES, `${name.replace(/[^a-z0-9]+/gi, '-')}.png`);
    await page.screenshot({ path: file, fullPage: true }).catch(() => {});
    e.message += `\n(screenshot: ${file})`;
    throw e;
  }
}

let counter = 0;
/** A fresh address per user within the run (each run has its own data
 * directory), the same from run to run so screenshots stay comparable. */
export function newEmail(name) {
  counter += 1;
  return `${name}.${counter}@example.com`;
}
