// An account shared by a team, in two browsers against the real service:
// the owner confirms their email from the emailed link (inviting needs it);
// on Free they are refused a second seat and upgrades through the
// simulator's checkout, invites by email; the invitee registers from the
// emailed link and joins as a member (no billing controls); the owner sees
// both members on the seat bar and removes the member, who loses access.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { newEmail, screenshot, serviceAndBrowser, waitForLinkPath, withFailureScreenshot } from './harness.mjs';

const PASSWORD = 'correct horse 9';
const rig = serviceAndBrowser();

async function register(page, { email, name, submit = 'Create account' }) {
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: submit }).click();
}

/** The text of a section, whitespace collapsed. */
async function sectionText(page, name) {
  const text = await page.getByRole('region', { name }).innerText();
  return text.replace(/\s+/g, ' ');
}

describe('a team shares an account', () => {
  let owner;
  let invitee;
  let accountName;
  let invitationPath;
  const ownerEmail = newEmail('ada');
  const inviteeEmail = newEmail('grace');

  before(async () => {
    owner = await rig.newPage();
    invitee = await rig.newPage();
  });
  after(async () => {
    await owner?.context().close();
    await invitee?.context().close();
  });

  test('on Free the owner has one seat: an invitation is refused with the upgrade, paid at checkout', async (t) => {
    await withFailureScreenshot(owner, t.name, async () => {
      await owner.goto(`${rig.service.base}/register`);
      await register(owner, { email: ownerEmail, name: 'Ada Lovelace' });
      await owner.getByRole('heading', { name: 'Your subscription' }).waitFor();
      assert.equal(await owner.getByTestId('account-role').innerText(), 'Owner');
      accountName = await owner.getByTestId('account-name').innerText();
      assert.ok(accountName.length > 0);

      // Inviting needs a confirmed email: the owner opens the emailed link.
      const notice = owner.getByRole('region', { name: 'Confirm your email address' });
      await notice.getByText(`We sent a link to ${ownerEmail}.`, { exact: false }).waitFor();
      await owner
        .getByRole('region', { name: 'Team' })
        .getByText('Inviting someone needs a confirmed email address.', { exact: false })
        .waitFor();
      const verifyPath = await waitForLinkPath(rig.service.mailDir, ownerEmail, '/verify-email/');
      await owner.goto(`${rig.service.base}${verifyPath}`);
      await owner.getByText(`${ownerEmail} is confirmed.`, { exact: false }).waitFor();
      await owner.getByRole('link', { name: 'Go to your account' }).click();
      await owner.getByRole('region', { name: 'Current plan' }).waitFor();
      await notice.waitFor({ state: 'detached' });

      const team = owner.getByRole('region', { name: 'Team' });
      assert.equal(await team.getByText('Inviting someone needs a confirmed email address.', { exact: false }).count(), 0);
      await team.getByText('1 of 1 member').waitFor();
      assert.equal(await team.locator('.usage').getAttribute('data-level'), 'full');
      await team.getByLabel('Email address').fill(inviteeEmail);
      await team.getByRole('button', { name: 'Send invitation' }).click();
      // The API's own message, with the plan that lifts the limit.
      const prompt = team.locator('.quota');
      await prompt.waitFor();
      assert.ok((await prompt.locator('p').innerText()).length > 0);
      await screenshot(owner, 'team-quota');
      await prompt.getByRole('button', { name: 'Upgrade to Professional' }).click();

      const change = owner.getByRole('region', { name: /Change to Professional, billed monthly/ });
      await change.getByText('Due now: $99.00, paid at checkout.').waitFor();
      await change.getByRole('button', { name: 'Continue to payment' }).click();
      await owner.waitForURL(/\/sim\/checkout\//);
      await owner.getByRole('button', { name: 'Pay $99.00' }).click();
      await owner.waitForURL(`${rig.service.base}/account**`);
      await owner.getByText('Payment received. You are on Professional.').waitFor();
      await owner.getByRole('region', { name: 'Team' }).getByText('1 of 10 members').waitFor();
    });
  });

  test('the owner invites by email; the invitation is pending and takes a seat', async (t) => {
    await withFailureScreenshot(owner, t.name, async () => {
      const team = owner.getByRole('region', { name: 'Team' });
      await team.getByLabel('Email address').fill(inviteeEmail);
      await team.getByLabel('Role', { exact: true }).selectOption('member');
      await team.getByRole('button', { name: 'Send invitation' }).click();
      await team.getByText(`Invitation sent to ${inviteeEmail}.`).waitFor();
      const pending = team.getByTestId('invitation');
      await pending.getByText(inviteeEmail).waitFor();
      assert.match((await pending.innerText()).replace(/\s+/g, ' '), /Member/);
      await team.getByText('2 of 10 members').waitFor();

      invitationPath = await waitForLinkPath(rig.service.mailDir, inviteeEmail, '/invitations/');
    });
  });

  test('the invitee registers from the emailed link and joins as a member, without billing controls', async (t) => {
    await withFailureScreenshot(invitee, t.name, async () => {
      // The link as emailed must reach the app (index.html), not a 404 for a missing file.
      const answer = await fetch(`${rig.service.base}${invitationPath}`);
      assert.equal(answer.status, 200, `handler serve answered ${answer.status} for the emailed link ${invitationPath}`);
      await invitee.goto(`${rig.service.base}${invitationPath}`);
      await invitee.getByRole('heading', { name: 'Join a team on KRAFTD' }).waitFor();
      await screenshot(invitee, 'invitation');
      await invitee.getByRole('link', { name: 'Create an account' }).click();
      await invitee.getByRole('heading', { name: 'Create your account' }).waitFor();
      await register(invitee, { email: inviteeEmail, name: 'Grace Hopper' });

      // Back at the invitation, signed in.
      await invitee.waitForURL(`${rig.service.base}${invitationPath}`);
      await invitee.getByText(`Signed in as ${inviteeEmail}`).waitFor();
      await invitee.getByRole('button', { name: 'Join the team' }).click();

      await invitee.waitForURL(`${rig.service.base}/account`);
      await invitee.getByText(`You joined ${accountName} as member.`).waitFor();
      assert.equal(await invitee.getByTestId('account-role').innerText(), 'Member');
      // Their own account and the joined one, to switch between.
      assert.equal(await invitee.getByRole('combobox', { name: 'Account' }).locator('option').count(), 2);
      assert.match(await sectionText(invitee, 'Current plan'), /Plan Professional Status Active/);
      await invitee.getByRole('region', { name: 'Team' }).getByText('2 of 10 members').waitFor();
      // The invitation went to their own address: that confirmed it.
      await invitee.getByRole('region', { name: 'Confirm your email address' }).waitFor({ state: 'detached' });
      for (const name of ['Cancel subscription', 'Manage payment details', 'Send invitation'])
        assert.equal(await invitee.getByRole('button', { name }).count(), 0, name);
      assert.equal(await invitee.getByRole('region', { name: 'Change plan' }).count(), 0);
      assert.equal(await invitee.getByRole('combobox', { name: /^Role of/ }).count(), 0);
      await screenshot(invitee, 'team-member');
    });
  });

  test('the owner sees two members on the seat bar, and removes the member', async (t) => {
    await withFailureScreenshot(owner, t.name, async () => {
      await owner.reload();
      const team = owner.getByRole('region', { name: 'Team' });
      await team.getByText('2 of 10 members').waitFor();
      assert.equal(await team.getByTestId('member').count(), 2);
      assert.equal(await team.getByTestId('invitation').count(), 0);
      const grace = team.getByTestId('member').filter({ hasText: inviteeEmail });
      assert.equal(await grace.getByRole('combobox', { name: 'Role of Grace Hopper' }).inputValue(), 'member');
      const meter = team.getByRole('meter', { name: 'Seats' });
      assert.equal(await meter.getAttribute('aria-valuenow'), '2');
      assert.equal(await meter.getAttribute('aria-valuemax'), '10');
      await screenshot(owner, 'team');

      await grace.getByRole('button', { name: 'Remove Grace Hopper' }).click();
      await team.getByRole('button', { name: 'Yes, remove Grace Hopper' }).click();
      await team.getByText('Grace Hopper was removed from the account.').waitFor();
      await team.getByText('1 of 10 members').waitFor();
      assert.equal(await team.getByTestId('member').count(), 1);
    });
  });

  test('the removed member loses access on the next page load, and the used link is no longer valid', async (t) => {
    await withFailureScreenshot(invitee, t.name, async () => {
      await invitee.reload();
      await invitee.getByText(`You are no longer a member of ${accountName}.`, { exact: false }).waitFor();
      assert.equal(await invitee.getByTestId('account-role').innerText(), 'Owner');
      assert.match(await sectionText(invitee, 'Current plan'), /Plan Free Status Active/);
      assert.equal(await invitee.getByRole('combobox', { name: 'Account' }).count(), 0);

      await invitee.goto(`${rig.service.base}${invitationPath}`);
      await invitee.getByRole('button', { name: 'Join the team' }).click();
      await invitee.getByRole('alert').getByText('This invitation is no longer valid').waitFor();
    });
  });
});
