// Email verification against the real service: a new user is asked to
// confirm their address, opens the emailed link and is confirmed; the same
// link again says it is no longer valid; a new link waits five minutes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  accessibilityViolations,
  newEmail,
  serviceAndBrowser,
  waitForLinkPath,
  withFailureScreenshot,
} from './harness.mjs';

const PASSWORD = 'correct horse 9';
const GONE = 'This link was used, replaced by a newer one, or has expired. Sign in and send a new one.';
const rig = serviceAndBrowser();

/** A page in a fresh browser profile, closed after the test. */
async function newPage(t) {
  const page = await rig.newPage();
  t.after(() => page.context().close());
  return page;
}

/** Registers on Free; the account page then asks to confirm the email. */
async function registerOnFree(page, email) {
  await page.goto(`${rig.service.base}/register`);
  await page.getByLabel('Name').fill('Ada Lovelace');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  const notice = page.getByRole('region', { name: 'Confirm your email address' });
  await notice.getByText(`We sent a link to ${email}.`, { exact: false }).waitFor();
  return notice;
}

async function assertAccessible(page) {
  assert.deepEqual(await accessibilityViolations(page), []);
}

test('a new user confirms their email from the emailed link; the link works once', async (t) => {
  const page = await newPage(t);
  await withFailureScreenshot(page, t.name, async () => {
    const email = newEmail('ada');
    const notice = await registerOnFree(page, email);
    await assertAccessible(page);

    const path = await waitForLinkPath(rig.service.mailDir, email, '/verify-email/');
    // The link as emailed reaches the app (index.html), not a 404 for a missing file.
    assert.equal((await fetch(`${rig.service.base}${path}`)).status, 200);
    await page.goto(`${rig.service.base}${path}`);
    await page.getByRole('heading', { name: 'Email address confirmed' }).waitFor();
    await page.getByText(`${email} is confirmed. You can now invite others to your team.`).waitFor();
    await assertAccessible(page);

    await page.getByRole('link', { name: 'Go to your account' }).click();
    await page.getByRole('region', { name: 'Current plan' }).waitFor();
    await notice.waitFor({ state: 'detached' });
    const team = page.getByRole('region', { name: 'Team' });
    await team.getByRole('button', { name: 'Send invitation' }).waitFor();
    assert.equal(await team.getByText(/needs a confirmed email/).count(), 0);

    // The same link again, in a browser that is not signed in.
    const other = await newPage(t);
    await other.goto(`${rig.service.base}${path}`);
    await other.getByRole('alert').getByText(GONE).waitFor();
    await assertAccessible(other);
    await other.getByRole('link', { name: 'Sign in to your account' }).click();
    await other.getByRole('heading', { name: 'Sign in' }).waitFor();
  });
});

// That a new link replaces the old one is the service's test
// (tests/verification.rs, which can move the clock five minutes on).
test('asking for a new link right after one was sent is refused, saying when to ask again', async (t) => {
  const page = await newPage(t);
  await withFailureScreenshot(page, t.name, async () => {
    const email = newEmail('grace');
    const notice = await registerOnFree(page, email);
    const first = await waitForLinkPath(rig.service.mailDir, email, '/verify-email/');

    await notice.getByRole('button', { name: 'Send a new link' }).click();
    await notice.getByRole('alert').getByText(/retry in \d+ s/).waitFor();

    // The link already sent still works.
    await page.goto(`${rig.service.base}${first}`);
    await page.getByRole('heading', { name: 'Email address confirmed' }).waitFor();
  });
});
