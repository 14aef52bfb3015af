// A customer's way through the web app, in Chromium, against the real
// service and its offline Stripe simulator: sign up on Free, reach a quota
// (reported by KRAFTD's services with a service key), upgrade through
// checkout, see the invoice, change billing, cancel, resume.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  FREE_DOCS_LIMIT,
  newEmail,
  screenshot,
  serviceAndBrowser,
  withFailureScreenshot,
} from './harness.mjs';

const PASSWORD = 'correct horse 9';
const rig = serviceAndBrowser();

async function register(page, { email, name, submit = 'Create account' }) {
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: submit }).click();
}

/** The text of the Current plan section, whitespace collapsed. */
async function currentPlan(page) {
  const text = await page.getByRole('region', { name: 'Current plan' }).innerText();
  return text.replace(/\s+/g, ' ');
}

async function payAtSimulatorCheckout(page, amount) {
  await page.waitForURL(/\/sim\/checkout\//);
  await page.getByRole('button', { name: `Pay ${amount}` }).click();
  await page.waitForURL(`${rig.service.base}/account**`);
  await page.getByText('Payment received.').waitFor();
}

describe('a customer on the offline simulator', () => {
  let page;
  const email = newEmail('ada');

  before(async () => {
    page = await rig.newPage();
  });
  after(async () => {
    await page?.context().close();
  });

  test('sees the plans, with the annual saving, and registers on Free', async (t) => {
    await withFailureScreenshot(page, t.name, async () => {
      await page.goto(rig.service.base);
      await page.getByRole('heading', { name: 'Plans and pricing', level: 1 }).waitFor();
      const pro = page.getByRole('article', { name: 'Professional' });
      await pro.getByText('$99.00').waitFor();
      await page.getByRole('radio', { name: /Annual/ }).check();
      await pro.getByText('$990.00').waitFor();
      // Twelve months at $99.00 is $1,188.00: the annual price saves $198.00.
      await pro.getByText('Save $198.00 a year (16%)').waitFor();
      await screenshot(page, 'pricing');

      await page.getByRole('radio', { name: 'Monthly' }).check();
      await page.getByRole('article', { name: 'Free' }).getByRole('button', { name: 'Start for free' }).click();
      await page.getByRole('heading', { name: 'Create your account' }).waitFor();
      await screenshot(page, 'register');
      await register(page, { email, name: 'Ada Lovelace' });
      await page.getByRole('heading', { name: 'Your subscription' }).waitFor();
      assert.match(await currentPlan(page), /Plan Free Status Active/);
    });
  });

  test('reaches the documents quota through the service\'s reports and is offered the upgrade', async (t) => {
    await withFailureScreenshot(page, t.name, async () => {
      // KRAFTD's document service reports usage with its own key, never the browser.
      const key = await rig.service.createServiceKey();
      const account = await rig.service.accountIdOf(email, PASSWORD);
      const report = (quantity) => rig.service.reportUsage(key, account, { metric: 'documents', quantity });
      const documents = page.locator('.usage[data-metric="documents"]');
      await documents.getByText(`0 of ${FREE_DOCS_LIMIT} documents`).waitFor();
      // 80% of the limit: the warning state. The page shows each report on its next load.
      for (let used = 1; used <= FREE_DOCS_LIMIT * 0.8; used++) {
        const answer = await report(1);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        assert.equal(answer.body.used, used);
        await page.reload();
        await documents.getByText(`${used} of ${FREE_DOCS_LIMIT} documents`).waitFor();
      }
      assert.equal(await documents.getAttribute('data-level'), 'warning');
      await documents.getByText('Nearly at the limit').waitFor();
      assert.equal(await page.locator('.quota').count(), 0);
      assert.equal((await report(1)).status, 200);
      await page.reload();
      await documents.getByText(`${FREE_DOCS_LIMIT} of ${FREE_DOCS_LIMIT} documents`).waitFor();
      assert.equal(await documents.getAttribute('data-level'), 'full');
      await documents.getByText('Limit reached').waitFor();

      // One more is refused by the API, in its words, with the upgrade; the page offers that upgrade.
      const refused = await report(1);
      assert.equal(refused.status, 403);
      assert.equal(refused.body.error.code, 'quota_exceeded');
      assert.equal(refused.body.error.message, 'the documents_per_month limit of the free plan is reached');
      assert.equal(refused.body.error.upgrade_to, 'pro');
      assert.match(refused.headers.get('x-upgrade-url') ?? '', /plan=pro/);
      await page.reload();
      await documents.getByText(`${FREE_DOCS_LIMIT} of ${FREE_DOCS_LIMIT} documents`).waitFor();
      const prompt = page.locator('.quota');
      await prompt.getByText(
        new RegExp(`^Documents this month: the Free plan's limit of ${FREE_DOCS_LIMIT} is reached, and KRAFTD refuses more until `),
      ).waitFor();
      await screenshot(page, 'quota');
      await prompt.getByRole('button', { name: 'Upgrade to Professional' }).click();
    });
  });

  test('previews the upgrade, pays at the simulator\'s checkout and is on Pro', async (t) => {
    await withFailureScreenshot(page, t.name, async () => {
      const change = page.getByRole('region', { name: /Change to Professional, billed monthly/ });
      await change.getByText('Due now: $99.00, paid at checkout.').waitFor();
      await change.getByRole('button', { name: 'Continue to payment' }).click();
      await payAtSimulatorCheckout(page, '$99.00');
      await page.getByText('Payment received. You are on Professional.').waitFor();
      assert.match(await currentPlan(page), /Plan Professional Status Active Price \$99\.00 per month Renews on/);
      // Pro's limits now apply to the same month's usage.
      await page.locator('.usage[data-metric="documents"]').getByText(`${FREE_DOCS_LIMIT} of 1,000 documents`).waitFor();
    });
  });

  test('sees the paid invoice, its amount formatted from cents once', async (t) => {
    await withFailureScreenshot(page, t.name, async () => {
      const invoices = page.getByRole('table');
      await invoices.getByRole('cell', { name: '$99.00' }).waitFor();
      await invoices.getByRole('cell', { name: 'paid' }).waitFor();
      assert.equal(await invoices.getByRole('cell', { name: '$0.99' }).count(), 0);
    });
  });

  test('switches to annual billing after seeing the prorated charge', async (t) => {
    await withFailureScreenshot(page, t.name, async () => {
      await page.getByRole('button', { name: /Switch to annual billing/ }).click();
      const change = page.getByRole('region', { name: /Change to Professional, billed annually/ });
      const due = change.getByText(/Due now: \$[\d,]+\.\d\d, prorated for the rest of your current billing period\./);
      await due.waitFor();
      await screenshot(page, 'plan-change');
      await change.getByRole('button', { name: 'Confirm change' }).click();
      await page.getByText('You are now on Professional, billed annually.').waitFor();
      assert.match(await currentPlan(page), /Price \$990\.00 per year/);
      await page.getByRole('table').getByRole('row').nth(2).waitFor();
    });
  });

  test('cancels, sees the end date, and resumes', async (t) => {
    await withFailureScreenshot(page, t.name, async () => {
      await page.getByRole('button', { name: 'Cancel subscription' }).click();
      await page.getByRole('button', { name: 'Yes, cancel at period end' }).click();
      await page.getByText(/^Your subscription will end on [A-Z][a-z]{2} \d{1,2}, \d{4}\.$/).waitFor();
      const plan = await currentPlan(page);
      const end = plan.match(/Ends on ([A-Z][a-z]{2} \d{1,2}, \d{4})/);
      assert.ok(end, plan);
      await page.getByText(`Your subscription is canceled and ends on ${end[1]}.`).waitFor();
      await screenshot(page, 'account-canceled');

      await page.getByRole('button', { name: 'Resume subscription' }).click();
      await page.getByText(`Your subscription continues. It renews on ${end[1]}.`).waitFor();
      assert.match(await currentPlan(page), new RegExp(`Renews on ${end[1]}`));
      await page.getByRole('button', { name: 'Cancel subscription' }).waitFor();
      // Each section once, however many times the page refreshed its parts.
      for (const name of ['Current plan', 'Usage', 'Billing history'])
        assert.equal(await page.getByRole('region', { name }).count(), 1, name);
      await screenshot(page, 'account');
    });
  });

  test('opens the customer portal and comes back', async (t) => {
    await withFailureScreenshot(page, t.name, async () => {
      await page.getByRole('button', { name: 'Manage payment details' }).click();
      await page.waitForURL(/\/sim\/portal\//);
      await page.getByRole('link').first().click();
      await page.waitForURL(`${rig.service.base}/account`);
      await page.getByRole('heading', { name: 'Your subscription' }).waitFor();
    });
  });
});

test('a paid plan chosen on the pricing page goes through checkout to an active subscription', async (t) => {
  const page = await rig.newPage();
  try {
    await withFailureScreenshot(page, t.name, async () => {
      await page.goto(`${rig.service.base}/pricing`);
      await page.getByRole('radio', { name: /Annual/ }).check();
      await page.getByRole('article', { name: 'Professional' }).getByRole('button', { name: 'Choose Professional' }).click();
      await page.getByText('$990.00 per year, paid at checkout next.').waitFor();
      await register(page, { email: newEmail('grace'), name: 'Grace Hopper', submit: 'Create account and pay' });
      await payAtSimulatorCheckout(page, '$990.00');
      assert.match(await currentPlan(page), /Plan Professional Status Active Price \$990\.00 per year Renews on/);
    });
  } finally {
    await page.context().close();
  }
});

test('the API\'s own messages are shown for bad sign-ups and sign-ins', async (t) => {
  const page = await rig.newPage();
  try {
    await withFailureScreenshot(page, t.name, async () => {
      await page.goto(`${rig.service.base}/register`);
      await page.getByLabel('Name').fill('Short Password');
      await page.getByLabel('Email').fill(newEmail('short'));
      await page.getByLabel('Password', { exact: true }).fill('short');
      await page.getByRole('button', { name: 'Create account' }).click();
      await page.getByRole('alert').getByText('password must be at least 10 characters').waitFor();
      assert.equal(await page.getByLabel('Password', { exact: true }).getAttribute('aria-invalid'), 'true');

      // Sign-in by keyboard alone.
      await page.getByRole('navigation').getByRole('link', { name: 'Sign in' }).click();
      await page.getByRole('heading', { name: 'Sign in' }).waitFor();
      await page.getByLabel('Email').focus();
      await page.keyboard.type(newEmail('nobody'));
      await page.keyboard.press('Tab');
      await page.keyboard.type('wrong horse 9');
      await page.keyboard.press('Enter');
      await page.getByRole('alert').getByText('email or password is incorrect').waitFor();
      await screenshot(page, 'login');
    });
  } finally {
    await page.context().close();
  }
});

test('leaving the checkout comes back to the pricing page, and the account waits for payment', async (t) => {
  const page = await rig.newPage();
  try {
    await withFailureScreenshot(page, t.name, async () => {
      await page.goto(`${rig.service.base}/register?plan=pro&interval=monthly`);
      await register(page, { email: newEmail('linus'), name: 'Linus', submit: 'Create account and pay' });
      await page.waitForURL(/\/sim\/checkout\//);
      await page.getByRole('link', { name: 'Cancel and go back' }).click();
      await page.waitForURL(`${rig.service.base}/pricing`);
      await page.getByRole('navigation').getByRole('link', { name: 'Account' }).click();
      assert.match(await currentPlan(page), /Plan Professional Status Awaiting payment/);
      await page.getByText('The payment for Professional has not been completed.', { exact: false }).waitFor();
      // Free's limits hold meanwhile.
      await page.locator('.usage[data-metric="documents"]').getByText(`0 of ${FREE_DOCS_LIMIT} documents`).waitFor();
    });
  } finally {
    await page.context().close();
  }
});
