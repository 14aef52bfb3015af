// Users as GET /api/me describes them, typed against the generated schema.
import type { UserProfile } from '../api/types';

/** A user who has not confirmed her email address yet. */
export const unconfirmedAda: UserProfile = {
  id: 'b8f6c1de-2a57-4c1e-9d1a-7f0e3c2b1a90',
  email: 'ada@example.com',
  name: 'Ada Lovelace',
  email_verified: false,
  created_at: '2026-11-02T09:00:00Z',
};
