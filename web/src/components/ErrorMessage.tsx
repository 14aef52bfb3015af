import { ApiError } from '../api/client';

/** An error as the API worded it; announced to screen readers at once. */
export function ErrorMessage({ error, id }: { error: unknown; id?: string }) {
  if (!error) return null;
  const message =
    error instanceof ApiError || error instanceof Error ? error.message : String(error);
  return (
    <p className="error" role="alert" id={id}>
      {message}
    </p>
  );
}
