import { render, screen } from '@testing-library/react';
import { describe, expect, test } from 'vitest';
import type { MeterReading } from '../api/types';
import { UsageBar, usageLevel } from './UsageBar';

function reading(used: number, limit: number | null, held = 0): MeterReading {
  return {
    metric: 'documents',
    limit_name: 'documents_per_month',
    used,
    held,
    limit,
    remaining: limit === null ? null : Math.max(0, limit - used),
    window: { start: '2026-11-01T00:00:00Z', end: '2026-12-01T00:00:00Z' },
    resets_at: '2026-12-01T00:00:00Z',
  };
}

describe('usage level', () => {
  test('warns from 80% and is full from 100%', () => {
    expect(usageLevel(39, 50)).toBe('ok');
    expect(usageLevel(40, 50)).toBe('warning');
    expect(usageLevel(49, 50)).toBe('warning');
    expect(usageLevel(50, 50)).toBe('full');
    expect(usageLevel(51, 50)).toBe('full');
    expect(usageLevel(0, 0)).toBe('full');
  });
});

describe('UsageBar', () => {
  test('shows usage against the limit as a meter, with no state words below 80%', () => {
    render(<UsageBar reading={reading(10, 50)} />);
    const meter = screen.getByRole('meter', { name: 'Documents this month' });
    expect(meter.getAttribute('aria-valuenow')).toBe('10');
    expect(meter.getAttribute('aria-valuemax')).toBe('50');
    expect(meter.getAttribute('aria-valuetext')).toBe('10 of 50 documents');
    expect(screen.queryByText(/limit/i)).toBeNull();
  });

  test('says "nearly at the limit" at 80%', () => {
    const { container } = render(<UsageBar reading={reading(40, 50)} />);
    expect(container.firstElementChild?.getAttribute('data-level')).toBe('warning');
    expect(screen.getByText(/Nearly at the limit/)).toBeTruthy();
    expect(screen.getByRole('meter').getAttribute('aria-valuetext')).toBe(
      '40 of 50 documents, nearly at the limit',
    );
  });

  test('says "limit reached" and when it resets at 100%', () => {
    const { container } = render(<UsageBar reading={reading(50, 50)} />);
    expect(container.firstElementChild?.getAttribute('data-level')).toBe('full');
    expect(screen.getByText(/Limit reached/)).toBeTruthy();
    expect(screen.getByText(/resets Dec 1, 2026/)).toBeTruthy();
  });

  test('counts what reservations hold against the limit, and says so', () => {
    const { container } = render(<UsageBar reading={reading(38, 50, 2)} />);
    expect(container.firstElementChild?.getAttribute('data-level')).toBe('warning');
    const meter = screen.getByRole('meter');
    expect(meter.getAttribute('aria-valuenow')).toBe('40');
    expect(meter.getAttribute('aria-valuetext')).toBe(
      '38 of 50 documents · 2 held for work in progress, nearly at the limit',
    );
  });

  test('is full when what is used and held reaches the limit', () => {
    const { container } = render(<UsageBar reading={reading(49, 50, 1)} />);
    expect(container.firstElementChild?.getAttribute('data-level')).toBe('full');
    expect(screen.getByText(/Limit reached/)).toBeTruthy();
  });

  test('shows an unlimited metric as a count, without a bar', () => {
    render(<UsageBar reading={reading(7, null)} />);
    expect(screen.queryByRole('meter')).toBeNull();
    expect(screen.getByText('7 documents · unlimited')).toBeTruthy();
  });
});

test('a limit of one takes the singular', () => {
  render(<UsageBar reading={{ ...reading(0, 1), metric: 'team_members', limit_name: 'team_members', window: null, resets_at: null }} />);
  expect(screen.getByText('0 of 1 member')).toBeTruthy();
});
