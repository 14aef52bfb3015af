import { useCallback, useEffect, useState } from 'react';

export interface Loaded<T> {
  data: T | null;
  error: unknown;
  reload: () => void;
  set: (data: T) => void;
}

/** Loads once per change of `key`; a newer load wins over an older one. */
export function useLoad<T>(load: () => Promise<T>, key: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [round, setRound] = useState(0);
  useEffect(() => {
    let stale = false;
    setError(null);
    load()
      .then((d) => !stale && setData(d))
      .catch((e) => !stale && setError(e));
    return () => {
      stale = true;
    };
  }, [...key, round]);
  const reload = useCallback(() => setRound((r) => r + 1), []);
  return { data, error, reload, set: setData };
}
