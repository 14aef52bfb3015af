import { render, screen } from '@testing-library/react';
import { expect, test } from 'vitest';
import { InvoiceTable } from './InvoiceTable';

test('invoice amounts are formatted from cents once, with dates in UTC', () => {
  render(
    <InvoiceTable
      invoices={[
        {
          id: 'in_1',
          number: 'SIM-000001',
          amount: 9900,
          amount_decimal: '99.00',
          amount_paid: 9900,
          currency: 'usd',
          status: 'paid',
          date: '2026-11-24T13:29:07Z',
          period_start: '2026-11-24T13:29:07Z',
          period_end: '2026-12-24T13:29:07Z',
          hosted_invoice_url: 'http://127.0.0.1:1/sim/invoices/in_1',
          pdf_url: null,
        },
      ]}
    />,
  );
  expect(screen.getByRole('cell', { name: '$99.00' })).toBeTruthy();
  expect(screen.queryByText('$0.99')).toBeNull();
  expect(screen.getByRole('link', { name: 'SIM-000001' }).getAttribute('href')).toBe(
    'http://127.0.0.1:1/sim/invoices/in_1',
  );
  expect(screen.getByRole('cell', { name: 'Nov 24, 2026 – Dec 24, 2026' })).toBeTruthy();
});

test('no invoices yet is said', () => {
  render(<InvoiceTable invoices={[]} />);
  expect(screen.getByText('No invoices yet.')).toBeTruthy();
});
