import type { MeterReading } from '../api/types';
import { formatCount, formatDate } from '../format';

const LABELS: Record<MeterReading['metric'], { name: string; one: string; many: string }> = {
  documents: { name: 'Documents this month', one: 'document', many: 'documents' },
  api_calls: { name: 'API calls today', one: 'call', many: 'calls' },
  exports: { name: 'Exports this month', one: 'export', many: 'exports' },
  storage_mb: { name: 'Storage', one: 'MB', many: 'MB' },
  team_members: { name: 'Team members', one: 'member', many: 'members' },
};

export type UsageLevel = 'ok' | 'warning' | 'full';

/** Warning from 80% of the limit, full at 100%. */
export function usageLevel(used: number, limit: number): UsageLevel {
  if (used >= limit) return 'full';
  if (used * 5 >= limit * 4) return 'warning';
  return 'ok';
}

const LEVEL_TEXT: Record<UsageLevel, string> = {
  ok: '',
  warning: 'Nearly at the limit',
  full: 'Limit reached',
};

/** The metric's name as the usage display says it ("Documents this month"). */
export function metricName(metric: MeterReading['metric']): string {
  return LABELS[metric].name;
}

/** What counts against the limit: what was used and what live reservations
 * hold (work in progress that KRAFTD's services reserved quota for). */
export function taken(reading: MeterReading): number {
  return reading.used + reading.held;
}

/** Usage against one limit, as a bar whose state is also said in words.
 * `label` names it where the metric's own name would not fit (the Team
 * section's "Seats"). */
export function UsageBar({ reading, label }: { reading: MeterReading; label?: string }) {
  const { one, many } = LABELS[reading.metric];
  const name = label ?? LABELS[reading.metric].name;
  // "1 document", "0 of 1 member", "3 of 50 documents": the last number decides.
  const unit = (n: number) => (n === 1 ? one : many);
  const id = `usage-${label ? label.toLowerCase().replace(/[^a-z0-9]+/g, '-') : reading.metric}`;
  const held = reading.held > 0 ? ` · ${formatCount(reading.held)} held for work in progress` : '';
  if (reading.limit === null) {
    return (
      <div className="usage" data-metric={reading.metric} data-level="unlimited">
        <span id={id} className="usage-name">
          {name}
        </span>
        <span className="usage-text">
          {formatCount(reading.used)} {unit(reading.used)}
          {held} · unlimited
        </span>
      </div>
    );
  }
  const limit = reading.limit;
  // Held quota counts against the limit as used quota does.
  const counted = taken(reading);
  const level = usageLevel(counted, limit);
  const percent = limit === 0 ? 100 : Math.min(100, Math.round((counted * 100) / limit));
  const text = `${formatCount(reading.used)} of ${formatCount(limit)} ${unit(limit)}${held}`;
  return (
    <div className="usage" data-metric={reading.metric} data-level={level}>
      <span id={id} className="usage-name">
        {name}
      </span>
      <div
        className="bar"
        role="meter"
        aria-labelledby={id}
        aria-valuemin={0}
        aria-valuemax={limit}
        aria-valuenow={Math.min(counted, limit)}
        aria-valuetext={`${text}${level === 'ok' ? '' : `, ${LEVEL_TEXT[level].toLowerCase()}`}`}
      >
        <div className="fill" style={{ width: `${percent}%` }} />
      </div>
      <span className="usage-text">
        {text}
        {level !== 'ok' && <strong className="level"> · {LEVEL_TEXT[level]}</strong>}
        {reading.resets_at && level === 'full' && <> · resets {formatDate(reading.resets_at)}</>}
      </span>
    </div>
  );
}
