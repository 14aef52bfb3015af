// The signed-in user as the service knows them now. The session keeps what
// sign-in said; an email confirmed since (in another tab, from the emailed
// link) shows up only when asked again.
import { useEffect } from 'react';
import { api, call } from './api/client';
import { updateUser, useSession } from './session';

/** Asks `GET /api/me` once per session token and keeps the answer in the
 * session. A failure changes nothing: the page's own calls report theirs. */
export function useFreshProfile(): void {
  const token = useSession()?.token;
  useEffect(() => {
    if (!token) return;
    let stale = false;
    call(api.GET('/api/me'))
      .then((me) => !stale && updateUser(me))
      .catch(() => {});
    return () => {
      stale = true;
    };
  }, [token]);
}
