// Runs the real service and a real browser for the end-to-end tests:
// `handler serve` (built beforehand by cargo) on a free loopback port with a
// fresh data directory and the offline Stripe simulator, serving the built
// web app (`npm run build`); Debian's Chromium driven by playwright-core.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { after, before } from 'node:test';
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
  const env = {
    PATH: process.env.PATH,
    PORT: String(port),
    DATA_DIR: dataDir,
    WEB_DIST: dist,
    FREE_PLAN_DOCS_LIMIT: String(FREE_DOCS_LIMIT),
    // The journeys pay at checkout; trials are tests/enterprise.rs's.
    PRO_TRIAL_DAYS: '0',
    LOG_FORMAT: 'text',
    RUST_LOG: 'info',
  };
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
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
    /** Where the service writes each email as an `.eml` file (no SMTP_URL). */
    mailDir: join(dataDir, 'mail'),
    /**
     * A service key, issued as an operator does: `handler service-keys
     * create` on the served handler's store (same binary, data directory and
     * settings). Returns the key, which it prints alone on its last line.
     */
    async createServiceKey(name = 'e2e-document-service', scopes = 'usage:write,entitlements:read') {
      const stdout = await new Promise((ok, fail) =>
        execFile(bin, ['service-keys', 'create', '--name', name, '--scopes', scopes], { env }, (e, out, err) =>
          e ? fail(new Error(`handler service-keys create failed: ${e.message}\n${err}`)) : ok(out),
        ),
      );
      const key = stdout.trim().split('\n').at(-1)?.trim();
      if (!key) throw new Error(`handler service-keys create printed no key: ${JSON.stringify(stdout)}`);
      return key;
    },
    /**
     * Reports usage the way KRAFTD's services do: `POST
     * /api/accounts/{account}/usage` with a service key and a fresh
     * Idempotency-Key. Returns `{status, body, headers}`, refusals included.
     */
    async reportUsage(key, accountId, report, idempotencyKey = randomUUID()) {
      const response = await fetch(`${base}/api/accounts/${accountId}/usage`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'idempotency-key': idempotencyKey,
          'content-type': 'application/json',
        },
        body: JSON.stringify(report),
      });
      return { status: response.status, body: await response.json(), headers: response.headers };
    },
    /** The id of the account a user acts on by default (the one they own),
     * as the answer to their sign-in names it. */
    async accountIdOf(email, password) {
      const response = await fetch(`${base}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email, password }),
      });
      const body = await response.json();
      if (!response.ok || !body.account) throw new Error(`sign-in as ${email}: ${response.status} ${JSON.stringify(body)}`);
      return body.account.id;
    },
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
 * The service and a browser for one test file: `service` and `browser` are
 * there once its tests run (started before them, stopped after), and
 * `newPage()` opens a page in a fresh browser profile (its own session).
 */
export function serviceAndBrowser() {
  const rig = {
    service: undefined,
    browser: undefined,
    async newPage() {
      const context = await rig.browser.newContext({ viewport: { width: 1100, height: 800 } });
      const page = await context.newPage();
      page.setDefaultTimeout(15_000);
      return page;
    },
  };
  before(async () => {
    rig.service = await startService();
    rig.browser = await startBrowser();
  });
  after(async () => {
    await rig.browser?.close();
    await rig.service?.stop();
  });
  return rig;
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

/** The value of one header of a MIME entity (unfolded), or ''. */
function header(head, name) {
  const unfolded = head.replace(/\r?\n[ \t]+/g, ' ');
  const m = unfolded.match(new RegExp(`^${name}:[ \\t]*(.*)$`, 'im'));
  return m ? m[1].trim() : '';
}

/** RFC 2047 encoded words (`=?utf-8?Q?...?=`, `=?utf-8?B?...?=`), as in a Subject. */
function decodeWords(value) {
  return value.replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=\s*/g, (_, _charset, enc, text) =>
    enc.toUpperCase() === 'B'
      ? Buffer.from(text, 'base64').toString('utf8')
      : Buffer.from(
          text.replace(/_/g, ' ').replace(/=([0-9A-F]{2})/gi, (_m, h) => String.fromCharCode(parseInt(h, 16))),
          'latin1',
        ).toString('utf8'),
  );
}

function decodeBody(head, body) {
  const encoding = header(head, 'Content-Transfer-Encoding').toLowerCase();
  if (encoding === 'base64') return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  if (encoding === 'quoted-printable')
    return Buffer.from(
      body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/gi, (_m, h) => String.fromCharCode(parseInt(h, 16))),
      'latin1',
    ).toString('utf8');
  return body;
}

/** A MIME entity's text parts, by content type, multiparts opened. */
function textParts(raw, into = {}) {
  const split = raw.search(/\r?\n\r?\n/);
  const head = split < 0 ? raw : raw.slice(0, split);
  const body = split < 0 ? '' : raw.slice(split).replace(/^\r?\n\r?\n/, '');
  const type = header(head, 'Content-Type');
  const boundary = type.match(/boundary="?([^";]+)"?/i)?.[1];
  if (/^multipart\//i.test(type) && boundary) {
    for (const part of body.split(`--${boundary}`).slice(1)) {
      if (part.startsWith('--')) break;
      textParts(part.replace(/^\r?\n/, ''), into);
    }
  } else {
    into[(type.split(';')[0] || 'text/plain').toLowerCase()] = decodeBody(head, body);
  }
  return into;
}

/** The emails the service wrote so far: `{to, subject, text, html, file}`. */
export function readMails(mailDir) {
  if (!existsSync(mailDir)) return [];
  return readdirSync(mailDir)
    .filter((f) => f.endsWith('.eml'))
    .map((f) => {
      const raw = readFileSync(join(mailDir, f), 'utf8');
      const split = raw.search(/\r?\n\r?\n/);
      const head = raw.slice(0, split < 0 ? raw.length : split);
      const parts = textParts(raw);
      return {
        file: f,
        to: header(head, 'To'),
        subject: decodeWords(header(head, 'Subject')),
        text: parts['text/plain'] ?? '',
        html: parts['text/html'] ?? '',
      };
    });
}

/** Waits for an email to `address` that `match`es (the outbox poller sends
 * within seconds), and returns it. */
export async function waitForMail(mailDir, address, match = () => true, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readMails(mailDir).find((m) => m.to.toLowerCase().includes(address.toLowerCase()) && match(m));
    if (found) return found;
    if (Date.now() > deadline) {
      const seen = readMails(mailDir).map((m) => `${m.to}: ${m.subject}`);
      throw new Error(`no email to ${address} within ${timeoutMs / 1000} s; the mail folder holds: ${JSON.stringify(seen)}`);
    }
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

/** Waits for an email to `address` with a link to `<prefix><token>` (a
 * path such as `/verify-email/`) on any origin, other than the paths in
 * `seen`, and returns the link's path. */
export async function waitForLinkPath(mailDir, address, prefix, seen = []) {
  const pattern = new RegExp(`https?://[^\\s"'<>]*?(${prefix}[A-Za-z0-9._~%-]+)`, 'g');
  const paths = (m) => [...(m.text + m.html).matchAll(pattern)].map((l) => l[1]).filter((p) => !seen.includes(p));
  const mail = await waitForMail(mailDir, address, (m) => paths(m).length > 0);
  return paths(mail)[0];
}
