import type { Plan } from '../api/types';
import { planName, type PlanTarget } from '../subscription';

/** A limit that is reached: what it is (the API's own words when it refused
 * a request, 403 `quota_exceeded`), and the upgrade that lifts it. Without
 * `onUpgrade` (the caller may not change the plan) it says who can. */
export function QuotaPrompt({
  message,
  upgradeTo,
  plans,
  onUpgrade,
}: {
  message: string;
  upgradeTo?: string;
  plans: Plan[];
  onUpgrade?: (t: PlanTarget) => void;
}) {
  return (
    <div className="quota" role="alert">
      <p>{message}</p>
      {upgradeTo &&
        (onUpgrade ? (
          <button
            type="button"
            className="primary"
            onClick={() => onUpgrade({ planId: upgradeTo as PlanTarget['planId'], interval: 'monthly' })}
          >
            Upgrade to {planName(plans, upgradeTo)}
          </button>
        ) : (
          <span>Ask an owner or admin of this account to upgrade to {planName(plans, upgradeTo)}.</span>
        ))}
    </div>
  );
}
