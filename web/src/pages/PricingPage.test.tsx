import { render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { expect, test } from 'vitest';
import { fakeApi, plans } from '../test/fakeApi';
import { PricingPage } from './PricingPage';

test('plan cards switch between monthly and annual prices, with the annual saving', async () => {
  fakeApi({ 'GET /api/plans': { body: plans } });
  const user = userEvent.setup();
  render(<PricingPage />);

  const pro = await screen.findByRole('article', { name: 'Professional' });
  expect(within(pro).getByText('$99.00')).toBeTruthy();
  expect(within(pro).getByText('/ month')).toBeTruthy();
  expect(within(pro).queryByText(/Save/)).toBeNull();

  // The toggle is a radio group: reachable and operable by keyboard.
  await user.tab();
  expect(screen.getByRole('radio', { name: 'Monthly' })).toBe(document.activeElement);
  await user.keyboard('{ArrowRight}');
  expect(screen.getByRole('radio', { name: /Annual \(save up to 16%\)/ })).toHaveProperty('checked', true);

  expect(within(pro).getByText('$990.00')).toBeTruthy();
  expect(within(pro).getByText('/ year')).toBeTruthy();
  expect(within(pro).getByText(/Save \$198\.00 a year \(16%\)/)).toBeTruthy();
  expect(
    within(screen.getByRole('article', { name: 'Enterprise' })).getByRole('link', { name: 'Contact sales' }),
  ).toBeTruthy();
});

test('choosing a paid plan when signed out goes to registration with that plan and interval', async () => {
  fakeApi({ 'GET /api/plans': { body: plans } });
  const user = userEvent.setup();
  render(<PricingPage />);
  await user.click(await screen.findByRole('radio', { name: /Annual/ }));
  const pro = screen.getByRole('article', { name: 'Professional' });
  await user.click(within(pro).getByRole('button', { name: 'Choose Professional' }));
  expect(location.pathname + location.search).toBe('/register?plan=pro&interval=annual');
});

test('the API’s message is shown when the plans cannot be loaded', async () => {
  fakeApi({
    'GET /api/plans': {
      status: 503,
      body: { error: { code: 'unavailable', message: 'the store is unavailable; try again shortly' } },
    },
  });
  render(<PricingPage />);
  expect((await screen.findByRole('alert')).textContent).toBe('the store is unavailable; try again shortly');
});
