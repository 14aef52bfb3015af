import type { ApiError } from '../api/client';
import type { Plan } from '../api/types';
import { planName, type PlanTarget } from '../subscription';

/** A limit the API refused to go past (403 `quota_exceeded`): its message,
 * and the upgrade that lifts it. Without `onUpgrade` (the caller may not
 * change the plan) it says who can. */
export function QuotaPrompt({
  refused,
  plans,
  onUpgrade,
}: {
  refused: ApiError;
  plans: Plan[];
  onUpgrade?: (t: PlanTarget) => void;
}) {
  const upgradeTo = refused.upgradeTo;
  return (
    <div className="quota" role="alert">
      <p>{refused.message}</p>
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
