import { render, screen } from '@testing-library/react';
import { expect, test } from 'vitest';
import type { Invoice } from '../api/types';
import { InvoiceTable } from './InvoiceTable';

const paid: Invoice = {
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
};

test('invoice amounts are formatted from cents once, with dates in UTC', () => {
  render(<InvoiceTable invoices={[paid]} />);
  expect(screen.getByRole('cell', { name: '$99.00' })).toBeTruthy();
  expect(screen.queryByText('$0.99')).toBeNull();
  expect(screen.getByRole('link', { name: 'SIM-000001' }).getAttribute('href')).toBe(
    'http://127.0.0.1:1/sim/invoices/in_1',
  );
  expect(screen.getByRole('cell', { name: 'Nov 24, 2026 – Dec 24, 2026' })).toBeTruthy();
});

test('an invoice in yen is shown in yen, which has no minor unit', () => {
  const yen = { amount: 15000, amount_decimal: '15000', amount_paid: 15000, currency: 'jpy' };
  render(<InvoiceTable invoices={[{ ...paid, ...yen }]} />);
  expect(screen.getByRole('cell', { name: '¥15,000' })).toBeTruthy();
  expect(screen.queryByText('$150.00')).toBeNull();
});

test('no invoices yet is said', () => {
  render(<InvoiceTable invoices={[]} />);
  expect(screen.getByText('No invoices yet.')).toBeTruthy();
});
