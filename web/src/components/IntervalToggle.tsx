import type { BillingInterval } from '../api/types';

/** Monthly or annual billing, as one radio group (arrow keys move between them). */
export function IntervalToggle({
  value,
  onChange,
  savingPercent,
}: {
  value: BillingInterval;
  onChange: (interval: BillingInterval) => void;
  savingPercent: number | null;
}) {
  const options: { value: BillingInterval; label: string; hint?: string }[] = [
    { value: 'monthly', label: 'Monthly' },
    {
      value: 'annual',
      label: 'Annual',
      ...(savingPercent ? { hint: `save up to ${savingPercent}%` } : {}),
    },
  ];
  return (
    <fieldset className="toggle">
      <legend>Billing period</legend>
      {options.map((o) => (
        <label key={o.value} className={value === o.value ? 'selected' : undefined}>
          <input
            type="radio"
            name="billing-interval"
            value={o.value}
            checked={value === o.value}
            onChange={() => onChange(o.value)}
          />
          {o.label}
          {o.hint && <span className="hint"> ({o.hint})</span>}
        </label>
      ))}
    </fieldset>
  );
}
